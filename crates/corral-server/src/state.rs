//! What both protocols share: the loaded models, their Triton-style counters, model control
//! (load, unload, reload), and the inference path with its error mapping.
//!
//! Counters belong to a model *name* and live as long as the server, across unloads and
//! reloads, so that metrics always add up to what clients saw. Loads and unloads are
//! serialised; an unload first removes the model from the table (new calls get NOT_FOUND at
//! once), then waits for the calls already accepted to complete.
//!
//! Versions (SPEC §8): every version a model's `version_policy` selects is served, each a
//! runtime model of its own named `NAME@V` with its own instances, batcher, sequences and
//! counters; a call without a version goes to the highest loaded one, a call for a version
//! that is not loaded gets Triton's error.
//!
//! A reload (a load of a loaded model) never leaves a gap and keeps what did not change:
//! 1. Versions whose folder, model file and configuration are as loaded keep serving as they
//!    are (their instances, counters and live sequences).
//! 2. Versions that are new are loaded; versions that changed are started beside the old
//!    ones ([`Runtime::replace`]: placed as if the old were gone, so when every core is taken
//!    the two share cores for the swap, switches counted).
//! 3. Only when every one of them started does the table change, in one write: new calls go
//!    to the new versions from then on. If any failed, those started are stopped
//!    ([`Runtime::revert`] for the changed ones) and everything that was serving keeps
//!    serving; the failure is the load's answer and the model's reason in the repository
//!    index, as Triton does.
//! 4. Versions the policy no longer selects, and the replaced ones, are dropped once the calls
//!    that reached them have been answered.

use corral_runtime::sync::lock;
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Instant, SystemTime},
};

use corral_engine::Tensor;
use corral_runtime::sync;
use corral_runtime::{Inference, Model, Runtime};

use crate::{
    batcher::Batcher,
    counters::Counters,
    error::{CallError, ErrorKind},
    overrides::{self, LoadOverride},
    repository::{self, ServeConfig},
    sequence::{SequenceParams, Sequencer},
    triton,
};

/// How models get loaded, as Triton's `--model-control-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlMode {
    /// Everything in the repository at start; the repository API cannot load or unload.
    None,
    /// Only `--load-model` at start, then what the repository API asks.
    Explicit,
}

/// A loaded version of a model, as served.
pub struct Served {
    pub name: String,
    /// The version's number, as protocols show it.
    pub version: String,
    pub number: u64,
    pub model: Model,
    pub config: ServeConfig,
    pub counters: Arc<Counters>,
    /// What the version was loaded from (definition, configuration, model file's size and
    /// time); a reload that finds the same keeps the version serving untouched.
    fingerprint: String,
    batcher: Option<Batcher>,
    sequencer: Option<Sequencer>,
}

/// A model's loaded versions, by number.
type Versions = BTreeMap<u64, Arc<Served>>;

impl Served {
    /// The batch size of a request: its first input's first dimension when the model batches.
    pub fn batch_of(&self, inputs: &[Tensor]) -> u64 {
        match inputs.first() {
            Some(input) if self.config.max_batch_size > 0 => input.shape.first().copied().unwrap_or(1) as u64,
            _ => 1,
        }
    }
}

/// A model's state in the repository index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub version: Option<String>,
    /// READY or UNAVAILABLE (Triton's words); `None` for a model never loaded.
    pub state: Option<&'static str>,
    pub reason: String,
}

/// The server's settings that its state consults (from `ServeOptions`).
#[derive(Clone, Copy, Debug)]
pub struct Flags {
    pub control: ControlMode,
    pub body_limit: usize,
    pub strict_readiness: bool,
    pub allow_client_shm: bool,
}

pub struct ServerState {
    pub runtime: Runtime,
    pub repository: PathBuf,
    pub control: ControlMode,
    pub body_limit: usize,
    strict_readiness: bool,
    /// Models whose configuration was read but whose load failed, with no version serving:
    /// under strict readiness the server is not ready while one is here (Triton: such a model
    /// is UNAVAILABLE in its lifecycle table; one whose configuration could not be read never
    /// enters it).
    failed_loads: Mutex<BTreeSet<String>>,
    models: RwLock<BTreeMap<String, Versions>>,
    /// Per model name and version, for the server's life.
    counters: Mutex<BTreeMap<(String, u64), Arc<Counters>>>,
    /// Why a model is not ready (load failure, unloaded).
    reasons: Mutex<BTreeMap<String, String>>,
    control_lock: tokio::sync::Mutex<()>,
    ready: AtomicBool,
    pub started: Instant,
    /// Registered system shared-memory regions (both protocols share them).
    pub shm: crate::shm::Regions,
    /// Trace settings and the trace file (Triton's trace extension).
    pub trace: crate::trace::Traces,
}

impl ServerState {
    pub fn new(runtime: Runtime, repository: PathBuf, flags: Flags, trace: crate::trace::Traces) -> ServerState {
        ServerState {
            runtime,
            repository,
            control: flags.control,
            body_limit: flags.body_limit,
            strict_readiness: flags.strict_readiness,
            failed_loads: Mutex::new(BTreeSet::new()),
            models: RwLock::new(BTreeMap::new()),
            counters: Mutex::new(BTreeMap::new()),
            reasons: Mutex::new(BTreeMap::new()),
            control_lock: tokio::sync::Mutex::new(()),
            ready: AtomicBool::new(false),
            started: Instant::now(),
            shm: crate::shm::Regions::new(flags.allow_client_shm),
            trace,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// Whether the server is ready, and why not: its start-up loads are not done, or (strict
    /// readiness, Triton's `--strict-readiness`, server.cc `IsReady`) a model whose
    /// configuration was read failed to load and has no version serving. A model whose
    /// configuration cannot be read does not count, as in Triton; the index shows both.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.ready.load(Relaxed) {
            return Err("the server is still loading its models".to_owned());
        }
        let failed = lock(&self.failed_loads);
        if self.strict_readiness && !failed.is_empty() {
            let names: Vec<&str> = failed.iter().map(String::as_str).collect();
            return Err(format!(
                "not ready: {} failed to load (strict readiness)\nhint: load it again once fixed, unload it, or start with --strict-readiness=false",
                names.join(", ")
            ));
        }
        Ok(())
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Relaxed);
    }

    /// Every loaded version of every model, by name then version.
    pub fn served(&self) -> Vec<Arc<Served>> {
        sync::read(&self.models).values().flat_map(|v| v.values().cloned()).collect()
    }

    /// Every loaded version of `name`, ascending (empty when it is not loaded).
    pub fn versions(&self, name: &str) -> Vec<Arc<Served>> {
        let models = sync::read(&self.models);
        models.get(name).map(|v| v.values().cloned().collect()).unwrap_or_default()
    }

    /// Every model version's counters, loaded or not, by name then version.
    pub fn all_counters(&self) -> Vec<(String, u64, Arc<Counters>)> {
        lock(&self.counters).iter().map(|((n, v), c)| (n.clone(), *v, c.clone())).collect()
    }

    /// The loaded model `name`, at `version` when one is given, else its highest loaded
    /// version. Errors use Triton's words (clients match them), with corral's reason after
    /// them where there is one.
    pub fn model(&self, name: &str, version: &str) -> Result<Arc<Served>, CallError> {
        let number = match version {
            "" => None,
            text => Some(text.parse::<i64>().map_err(|_| triton::bad_version(version))?),
        };
        let models = sync::read(&self.models);
        let Some(versions) = models.get(name) else {
            return Err(match lock(&self.reasons).get(name) {
                Some(why) => triton::no_available_versions(name, why),
                None => triton::unknown_model(name),
            });
        };
        let served = match number {
            // Triton: -1 (or no version) is the highest ready version.
            None | Some(-1) => versions.values().next_back(),
            Some(n) => u64::try_from(n).ok().and_then(|n| versions.get(&n)),
        };
        served.cloned().ok_or_else(|| {
            let loaded: Vec<String> = versions.keys().map(u64::to_string).collect();
            triton::version_not_found(name, version, &format!("loaded: {}", loaded.join(", ")))
        })
    }

    /// Runs one call of `served`, counting it as Triton does; `decoded` is the time the
    /// protocol took to turn the request into `inputs` (Triton's `compute_input`).
    pub async fn infer(
        &self,
        served: &Served,
        inputs: Vec<Tensor>,
        sequence: &SequenceParams,
        decoded: std::time::Duration,
    ) -> Result<Inference, CallError> {
        let counters = &served.counters;
        let start = Instant::now();
        counters.pending.fetch_add(1, Relaxed);
        let batch = served.batch_of(&inputs);
        let result = match (&served.sequencer, &served.batcher) {
            (Some(sequencer), _) => match sequencer.submit(&served.model, inputs, sequence) {
                Ok(reply) => reply.await.map_err(CallError::from),
                Err(error) => Err(error),
            },
            (None, Some(batcher)) => batcher.infer(inputs).await,
            (None, None) => served.model.infer_async(inputs).await.map_err(CallError::from),
        };
        // The runtime knows the version as `NAME@V`; clients know it by name and version.
        let result = result.map_err(|error| served.named(error));
        counters.pending.fetch_sub(1, Relaxed);
        let elapsed = start.elapsed();
        counters.duration.observe(elapsed);
        match &result {
            Ok(inference) => {
                counters.success.add(decoded + elapsed);
                counters.queue.add(inference.started.saturating_duration_since(start));
                counters.inferences.fetch_add(batch, Relaxed);
                if served.batcher.is_none() {
                    // One execution of this request (the batcher counts its own).
                    counters.executions.fetch_add(1, Relaxed);
                    counters.batch(batch, decoded, inference.compute);
                }
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                counters.last_inference_ms.store(now.as_millis() as u64, Relaxed);
            }
            Err(_) => counters.fail.add(elapsed),
        }
        result
    }

    /// A request refused before it ran because of its inputs (decoding or Triton's checks):
    /// counted as a failure (Triton's statistics and metrics) and as the model's input
    /// failure (`corral monitor`'s `incorrect_input`), as the runtime counts its own.
    pub fn refused(&self, served: &Served, error: CallError) -> CallError {
        if error.kind == ErrorKind::BadRequest || error.kind == ErrorKind::Internal {
            served.counters.fail.add(std::time::Duration::ZERO);
            served.model.count_refused_input();
        }
        error
    }

    /// Whether a request of `served` that reached the server at `received` is traced.
    pub fn trace(&self, served: &Served, received: Instant) -> Option<crate::trace::Trace> {
        self.trace.sample(&served.name, served.number, received)
    }

    /// Records the engine's points of a traced call (its inputs are bound and its outputs read
    /// inside the run, so the inner points equal its ends).
    pub fn traced_compute(trace: &mut Option<crate::trace::Trace>, inference: &Inference) {
        if let Some(trace) = trace {
            let end = inference.started + inference.compute;
            trace.point("COMPUTE_START", inference.started);
            trace.point("COMPUTE_INPUT_END", inference.started);
            trace.point("COMPUTE_OUTPUT_START", end);
            trace.point("COMPUTE_END", end);
        }
    }

    /// Ends a traced call once its answer is encoded.
    pub fn trace_end(&self, trace: Option<crate::trace::Trace>) {
        if let Some(trace) = trace {
            self.trace.finish(trace, Instant::now());
        }
    }

    /// Counts the time a protocol took to turn a call's outputs into its answer (Triton's
    /// `compute_output`; it also lengthens the call's success time), with the call's
    /// `compute_input` (`decoded`) and `compute_infer` (the engine's run), all three at once;
    /// `batch` is the call's batch size ([`Served::batch_of`]).
    pub fn encoded(
        &self,
        served: &Served,
        batch: u64,
        decoded: std::time::Duration,
        inference: &Inference,
        took: std::time::Duration,
    ) {
        served.counters.compute.add(decoded, inference.compute, took);
        if served.batcher.is_none() {
            served.counters.batch_output(batch, took);
        }
        served.counters.success.ns.fetch_add(took.as_nanos() as u64, Relaxed);
    }

    fn counters_for(&self, name: &str, version: u64) -> Arc<Counters> {
        lock(&self.counters).entry((name.to_owned(), version)).or_default().clone()
    }

    fn refuse_without_control(&self) -> Result<(), CallError> {
        if self.control == ControlMode::None {
            // Any mode but explicit refuses the API, as Triton's does.
            return Err(triton::control_disabled());
        }
        Ok(())
    }

    /// The repository API's load: loads `name`, or reloads it when loaded.
    pub async fn request_load(self: &Arc<Self>, name: &str, over: LoadOverride) -> Result<(), CallError> {
        self.refuse_without_control()?;
        self.load_as(name, over).await
    }

    pub async fn request_unload(self: &Arc<Self>, name: &str) -> Result<(), CallError> {
        self.refuse_without_control()?;
        self.unload(name).await
    }

    /// Loads (or reloads) `name` from the repository.
    pub async fn load(self: &Arc<Self>, name: &str) -> Result<(), CallError> {
        self.load_as(name, LoadOverride::default()).await
    }

    /// Loads (or reloads) `name` with a load request's configuration and files.
    pub async fn load_as(self: &Arc<Self>, name: &str, over: LoadOverride) -> Result<(), CallError> {
        // Triton's check of the name; corral's stricter rule for what may become a folder
        // name is checked as the folder is read (a name it refuses is a failed poll, as a
        // missing folder is).
        let trimmed = name.trim();
        if trimmed.is_empty() {
            return Err(triton::empty_model_name());
        }
        if trimmed == ".." || trimmed.contains('/') {
            return Err(triton::path_traversal(name));
        }
        let _one_at_a_time = self.control_lock.lock().await;
        let this = self.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || this.load_blocking(&name, &over))
            .await
            .map_err(|e| CallError::new(ErrorKind::Internal, format!("load task failed: {e}")))?
    }

    fn load_blocking(self: &Arc<Self>, name: &str, over: &LoadOverride) -> Result<(), CallError> {
        let old: Versions = sync::read(&self.models).get(name).cloned().unwrap_or_default();
        // A failure's answer is Triton's (its code and words), its reason in the index
        // corral's own.
        let failed = |error: CallError, reason: String| {
            let reason = if old.is_empty() {
                reason
            } else {
                format!("reload failed, the loaded version keeps serving: {reason}")
            };
            lock(&self.reasons).insert(name.to_owned(), reason);
            tracing::warn!(model = name, "load failed: {}", error.message);
            Err(error)
        };
        // Files given with the load live until the model is loaded (engines read them then).
        let (repo_model, _given) = match overrides::read_with(&self.repository, name, over) {
            Ok(model) => model,
            // As in Triton, whatever stops the model being read (no folder, a configuration
            // or override that does not read, files that cannot be written) is a failed poll,
            // answered 500 / INTERNAL; Triton logs the reason, corral also gives it after
            // Triton's words.
            Err(error) => {
                let reason = error.to_string();
                tracing::warn!(model = name, "{}", triton::poll_failed(name, &reason));
                return failed(triton::load_poll_failed(name, &reason), reason);
            }
        };
        let config = repo_model.config;
        // Steps 1 and 2 of the module's protocol: keep, load or replace each version.
        let mut kept = Versions::new();
        let mut started: Vec<(u64, Model, String)> = Vec::new();
        let mut replacements: Vec<corral_runtime::Replacement> = Vec::new();
        let mut failure: Option<(u64, String)> = None;
        for version in &repo_model.versions {
            let fingerprint = fingerprint(&version.def, &config);
            let result = match old.get(&version.number) {
                Some(served) if served.fingerprint == fingerprint => {
                    kept.insert(version.number, served.clone());
                    continue;
                }
                Some(_) => self.runtime.replace(version.def.clone()).map(|replacement| {
                    let model = replacement.model.clone();
                    replacements.push(replacement);
                    model
                }),
                None => self.runtime.load(version.def.clone()),
            };
            match result {
                Ok(model) => started.push((version.number, model, fingerprint)),
                Err(error) => {
                    failure = Some((version.number, error.to_string()));
                    break;
                }
            }
        }
        if let Some((version, message)) = failure {
            for replacement in replacements {
                self.runtime.revert(replacement);
            }
            for (_, model, _) in &started {
                // Replaced versions were reverted above; only new ones are still loaded here.
                if !old.values().any(|s| s.model.name() == model.name()) {
                    let _ = self.runtime.unload(model.name());
                }
            }
            // Triton's answer names the version and its state.
            let answer = triton::version_load_failed(name, version, &message);
            if old.is_empty() {
                lock(&self.failed_loads).insert(name.to_owned());
            }
            return failed(answer, message);
        }
        // Step 3: one write switches every new call to the new set of versions.
        let mut versions = kept;
        for (number, model, fingerprint) in started {
            let counters = self.counters_for(name, number);
            let batcher = config.batch_delay.map(|delay| {
                Batcher::start(model.clone(), config.max_batch_size, delay, config.max_queue_size, counters.clone())
            });
            let sequencer =
                config.sequence.clone().map(|sequence| Sequencer::new(name, sequence, config.max_batch_size > 0));
            let served = Served {
                name: name.to_owned(),
                version: number.to_string(),
                number,
                model,
                config: config.clone(),
                counters,
                fingerprint,
                batcher,
                sequencer,
            };
            versions.insert(number, Arc::new(served));
        }
        let numbers: Vec<u64> = versions.keys().copied().collect();
        lock(&self.reasons).remove(name);
        lock(&self.failed_loads).remove(name);
        sync::write(&self.models).insert(name.to_owned(), versions.clone());
        tracing::info!(model = name, versions = ?numbers, "serving");
        // Step 4: versions that no longer serve go once their calls are answered.
        let retired: Vec<Arc<Served>> = old
            .into_iter()
            .filter(|(number, served)| versions.get(number).is_none_or(|now| !Arc::ptr_eq(now, served)))
            .map(|(_, served)| served)
            .collect();
        self.retire(retired, replacements);
        Ok(())
    }

    /// Waits until no call holds the retired versions any more (each call holds its version
    /// from its lookup to its answer), then stops them: a replaced version by dropping its
    /// replacement, a version no longer selected by unloading it. A call stuck past the
    /// execution timeout is not waited for: the old version stops under it and it is
    /// answered as unloaded.
    fn retire(&self, old: Vec<Arc<Served>>, replacements: Vec<corral_runtime::Replacement>) {
        let deadline = Instant::now() + self.runtime.exec_timeout() + std::time::Duration::from_secs(1);
        while old.iter().any(|served| Arc::strong_count(served) > 1) && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let replaced: Vec<String> = replacements.iter().map(|r| r.model.name().to_owned()).collect();
        for served in old {
            let runtime_name = served.model.name().to_owned();
            drop(served); // its batcher, if any, ends with it
            if !replaced.contains(&runtime_name)
                && let Err(error) = self.runtime.unload(&runtime_name)
            {
                tracing::warn!(model = %runtime_name, "unload: {error}");
            }
        }
        drop(replacements); // drains and stops the replaced instances
    }

    /// Unloads `name`; unloading a model that is not loaded succeeds (as Triton's does, whose
    /// unload does not check the name either: no such name is ever loaded).
    pub async fn unload(self: &Arc<Self>, name: &str) -> Result<(), CallError> {
        let _one_at_a_time = self.control_lock.lock().await;
        let this = self.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            lock(&this.failed_loads).remove(&name);
            if this.unload_blocking(&name) {
                lock(&this.reasons).insert(name.clone(), "unloaded".to_owned());
            }
        })
        .await
        .map_err(|e| CallError::new(ErrorKind::Internal, format!("unload task failed: {e}")))
    }

    /// Removes `name` from the table, then waits for its accepted calls. False if not loaded.
    fn unload_blocking(&self, name: &str) -> bool {
        let removed = sync::write(&self.models).remove(name);
        let Some(versions) = removed else { return false };
        for served in versions.values() {
            if let Err(error) = self.runtime.unload(served.model.name()) {
                tracing::warn!(model = name, version = served.number, "unload: {error}");
            }
        }
        tracing::info!(model = name, "unloaded");
        true
    }

    /// Every model of the repository and every loaded one, with its state, as Triton lists
    /// them: one entry per loaded version; a model that failed or was unloaded UNAVAILABLE
    /// with its reason; a model never loaded by its name alone.
    pub fn index(&self) -> Vec<IndexEntry> {
        let mut names = repository::names(&self.repository);
        let loaded = sync::read(&self.models).clone();
        names.extend(loaded.keys().cloned());
        names.sort();
        names.dedup();
        let reasons = lock(&self.reasons).clone();
        let mut entries = Vec::new();
        for name in names {
            // A loaded model's reason is a failed reload's, if any.
            let reason = reasons.get(&name).cloned().unwrap_or_default();
            match loaded.get(&name) {
                Some(versions) => entries.extend(versions.values().map(|served| IndexEntry {
                    name: name.clone(),
                    version: Some(served.version.clone()),
                    state: Some("READY"),
                    reason: reason.clone(),
                })),
                None if reason.is_empty() => entries.push(IndexEntry { name, version: None, state: None, reason }),
                None => entries.push(IndexEntry { name, version: None, state: Some("UNAVAILABLE"), reason }),
            }
        }
        entries
    }
}

impl Served {
    /// A runtime error of this version's model, told in the name and version clients use.
    fn named(&self, error: CallError) -> CallError {
        let runtime_name = self.model.name();
        if error.kind == ErrorKind::NotFound {
            // The runtime says the model was unloaded under the call.
            return triton::version_unavailable(&self.name, &self.version, "unloaded");
        }
        CallError::new(error.kind, error.message.replace(&format!("`{runtime_name}`"), &format!("`{}`", self.name)))
    }
}

/// What a version is loaded from, to tell at a reload whether it changed.
fn fingerprint(def: &corral_runtime::ModelDef, config: &crate::repository::ServeConfig) -> String {
    let file = match &def.source {
        corral_engine::ModelSource::Onnx(path) => std::fs::metadata(path)
            .map(|m| format!("{} bytes, modified {:?}", m.len(), m.modified().ok()))
            .unwrap_or_default(),
        corral_engine::ModelSource::Sim(_) => String::new(),
    };
    format!("{def:?} {config:?} {file}")
}
