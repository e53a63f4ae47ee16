//! What both protocols share: the loaded models, their Triton-style counters, model control
//! (load, unload, reload), and the inference path with its error mapping.
//!
//! Counters belong to a model *name* and live as long as the server, across unloads and
//! reloads, so that metrics always add up to what clients saw. Loads and unloads are
//! serialised; an unload first removes the model from the table (new calls get NOT_FOUND at
//! once), then waits for the calls already accepted to complete.
//!
//! A reload (a load of a loaded model) never leaves a gap: the new version is started beside
//! the old one ([`Runtime::replace`]: placed as if the old were gone, so when every core is
//! taken the two share cores for the swap, switches counted), new calls go to it from the
//! moment it is in the table, and the old version is dropped once the calls that reached it
//! have been answered. A reload that fails leaves the old version serving; the failure is the
//! load's answer and the model's reason in the repository index, as Triton does.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Instant, SystemTime},
};

use corral_engine::Tensor;
use corral_runtime::{Inference, Model, Runtime};

use crate::{
    batcher::Batcher,
    counters::Counters,
    error::{CallError, ErrorKind},
    repository::{self, LoadOverride, RepoError, ServeConfig},
    sequence::{SequenceParams, Sequencer},
};

/// How models get loaded, as Triton's `--model-control-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlMode {
    /// Everything in the repository at start; the repository API cannot load or unload.
    None,
    /// Only `--load-model` at start, then what the repository API asks.
    Explicit,
}

/// A loaded model as served.
pub struct Served {
    pub name: String,
    pub version: String,
    pub model: Model,
    pub config: ServeConfig,
    pub counters: Arc<Counters>,
    batcher: Option<Batcher>,
    sequencer: Option<Sequencer>,
}

impl Served {
    /// The batch size of a request: its first input's first dimension when the model batches.
    fn batch_of(&self, inputs: &[Tensor]) -> u64 {
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
    /// READY, UNAVAILABLE or LOADING (Triton's words).
    pub state: &'static str,
    pub reason: String,
}

pub struct ServerState {
    pub runtime: Runtime,
    pub repository: PathBuf,
    pub control: ControlMode,
    pub body_limit: usize,
    models: RwLock<BTreeMap<String, Arc<Served>>>,
    counters: Mutex<BTreeMap<String, Arc<Counters>>>,
    /// Why a model is not ready (load failure, unloaded).
    reasons: Mutex<BTreeMap<String, String>>,
    control_lock: tokio::sync::Mutex<()>,
    ready: AtomicBool,
    /// Each core's busy time at the last metrics scrape, and when it was.
    last_scrape: Mutex<Option<(Instant, Vec<std::time::Duration>)>>,
    pub started: Instant,
    /// Registered system shared-memory regions (both protocols share them).
    pub shm: crate::shm::Regions,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServerState {
    pub fn new(runtime: Runtime, repository: PathBuf, control: ControlMode, body_limit: usize) -> ServerState {
        ServerState {
            runtime,
            repository,
            control,
            body_limit,
            models: RwLock::new(BTreeMap::new()),
            counters: Mutex::new(BTreeMap::new()),
            reasons: Mutex::new(BTreeMap::new()),
            control_lock: tokio::sync::Mutex::new(()),
            ready: AtomicBool::new(false),
            last_scrape: Mutex::new(None),
            started: Instant::now(),
            shm: crate::shm::Regions::default(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Relaxed);
    }

    pub fn served(&self) -> Vec<Arc<Served>> {
        self.models.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Each core's share of time spent executing since the previous call (since the server
    /// started, on the first), between 0 and 1.
    pub fn core_utilization(&self, cores: &[corral_runtime::CoreStats]) -> Vec<f64> {
        let now = Instant::now();
        let busy: Vec<std::time::Duration> = cores.iter().map(|c| c.busy).collect();
        let mut last = lock(&self.last_scrape);
        let (since, before) =
            last.take().unwrap_or_else(|| (self.started, vec![std::time::Duration::ZERO; busy.len()]));
        let elapsed = now.saturating_duration_since(since).as_secs_f64().max(1e-9);
        let shares = busy
            .iter()
            .zip(before.iter().chain(std::iter::repeat(&std::time::Duration::ZERO)))
            .map(|(now, then)| (now.saturating_sub(*then).as_secs_f64() / elapsed).clamp(0.0, 1.0))
            .collect();
        *last = Some((now, busy));
        shares
    }

    /// Every model name's counters, loaded or not.
    pub fn all_counters(&self) -> Vec<(String, Arc<Counters>)> {
        lock(&self.counters).iter().map(|(n, c)| (n.clone(), c.clone())).collect()
    }

    /// The loaded model `name`, at `version` when one is given. Errors use Triton's words
    /// (clients match them), with corral's reason after them where there is one.
    pub fn model(&self, name: &str, version: &str) -> Result<Arc<Served>, CallError> {
        if !version.is_empty() && version.parse::<i64>().is_err() {
            return Err(CallError::bad_request(format!(
                "failed to get model version from specified version string '{version}'"
            )));
        }
        let served = self.models.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
        let Some(served) = served else {
            let message = match lock(&self.reasons).get(name) {
                Some(why) => format!("Request for unknown model: '{name}' has no available versions ({why})"),
                None => format!("Request for unknown model: '{name}' is not found"),
            };
            return Err(CallError::new(ErrorKind::NotFound, message));
        };
        if !version.is_empty() && version != served.version {
            return Err(CallError::new(
                ErrorKind::NotFound,
                format!(
                    "Request for unknown model: '{name}' version {version} is not found (version {} is loaded)",
                    served.version
                ),
            ));
        }
        Ok(served)
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
        counters.pending.fetch_sub(1, Relaxed);
        let elapsed = start.elapsed();
        counters.duration.observe(elapsed);
        match &result {
            Ok(inference) => {
                counters.success.add(decoded + elapsed);
                counters.queue.add(inference.started.saturating_duration_since(start));
                counters.compute_infer.add(inference.compute);
                counters.compute_input.add(decoded);
                counters.inferences.fetch_add(batch, Relaxed);
                if served.batcher.is_none() {
                    counters.executions.fetch_add(1, Relaxed);
                }
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                counters.last_inference_ms.store(now.as_millis() as u64, Relaxed);
            }
            Err(_) => counters.fail.add(elapsed),
        }
        result
    }

    /// Counts the time a protocol took to turn a call's outputs into its answer (Triton's
    /// `compute_output`; it also lengthens the call's success time).
    pub fn encoded(&self, served: &Served, took: std::time::Duration) {
        served.counters.compute_output.add(took);
        served.counters.success.ns.fetch_add(took.as_nanos() as u64, Relaxed);
    }

    fn counters_for(&self, name: &str) -> Arc<Counters> {
        lock(&self.counters).entry(name.to_owned()).or_default().clone()
    }

    fn refuse_without_control(&self) -> Result<(), CallError> {
        if self.control == ControlMode::None {
            return Err(CallError::bad_request(
                "model control is off: start corral serve with --model-control-mode explicit to load and unload models",
            ));
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
        repository::check_name(name).map_err(|e| CallError::bad_request(e.to_string()))?;
        let _one_at_a_time = self.control_lock.lock().await;
        let this = self.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || this.load_blocking(&name, &over))
            .await
            .map_err(|e| CallError::new(ErrorKind::Internal, format!("load task failed: {e}")))?
    }

    fn load_blocking(self: &Arc<Self>, name: &str, over: &LoadOverride) -> Result<(), CallError> {
        let old = self.models.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
        let failed = |message: String| {
            let reason = if old.is_some() {
                format!("reload failed, the loaded version keeps serving: {message}")
            } else {
                message.clone()
            };
            lock(&self.reasons).insert(name.to_owned(), reason);
            tracing::warn!(model = name, "load failed: {message}");
            Err(CallError::bad_request(format!("failed to load `{name}`: {message}")))
        };
        // Files given with the load live until the model is loaded (engines read them then).
        let (repo_model, _given) = match repository::read_with(&self.repository, name, over) {
            Ok(model) => model,
            Err(error @ RepoError::BadName(_)) => return Err(CallError::bad_request(error.to_string())),
            Err(error) => return failed(error.to_string()),
        };
        let (model, replacement) = match &old {
            Some(_) => match self.runtime.replace(repo_model.def) {
                Ok(replacement) => (replacement.model.clone(), Some(replacement)),
                Err(error) => return failed(error.to_string()),
            },
            None => match self.runtime.load(repo_model.def) {
                Ok(model) => (model, None),
                Err(error) => return failed(error.to_string()),
            },
        };
        let config = repo_model.config;
        let batcher = config
            .batch_delay
            .map(|delay| Batcher::start(model.clone(), config.max_batch_size, delay, self.counters_for(name)));
        let sequencer = config
            .sequence
            .clone()
            .map(|sequence| Sequencer::new(sequence, model.instances().len(), config.max_batch_size > 0));
        let served = Served {
            name: name.to_owned(),
            version: "1".to_owned(),
            model,
            config,
            counters: self.counters_for(name),
            batcher,
            sequencer,
        };
        lock(&self.reasons).remove(name);
        self.models.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), Arc::new(served));
        tracing::info!(model = name, "serving");
        if let Some(old) = old {
            self.retire(old, replacement);
        }
        Ok(())
    }

    /// Waits until no call holds the replaced version any more (each call holds it from its
    /// lookup to its answer), then stops it. A call stuck past the execution timeout is not
    /// waited for: the old version stops under it and it is answered as unloaded.
    fn retire(&self, old: Arc<Served>, replacement: Option<corral_runtime::Replacement>) {
        let deadline = Instant::now() + self.runtime.exec_timeout() + std::time::Duration::from_secs(1);
        while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(old); // its batcher, if any, ends with it
        drop(replacement); // drains and stops the old instances
    }

    /// Unloads `name`; unloading a model that is not loaded succeeds (as Triton's does).
    pub async fn unload(self: &Arc<Self>, name: &str) -> Result<(), CallError> {
        repository::check_name(name).map_err(|e| CallError::bad_request(e.to_string()))?;
        let _one_at_a_time = self.control_lock.lock().await;
        let this = self.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            if this.unload_blocking(&name) {
                lock(&this.reasons).insert(name.clone(), "unloaded".to_owned());
            }
        })
        .await
        .map_err(|e| CallError::new(ErrorKind::Internal, format!("unload task failed: {e}")))
    }

    /// Removes `name` from the table, then waits for its accepted calls. False if not loaded.
    fn unload_blocking(&self, name: &str) -> bool {
        let removed = self.models.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        if removed.is_none() {
            return false;
        }
        if let Err(error) = self.runtime.unload(name) {
            tracing::warn!(model = name, "unload: {error}");
        }
        tracing::info!(model = name, "unloaded");
        true
    }

    /// Every model of the repository and every loaded one, with its state.
    pub fn index(&self) -> Vec<IndexEntry> {
        let mut names = repository::names(&self.repository);
        let loaded = self.models.read().unwrap_or_else(|p| p.into_inner()).clone();
        names.extend(loaded.keys().cloned());
        names.sort();
        names.dedup();
        let reasons = lock(&self.reasons).clone();
        names
            .into_iter()
            .map(|name| match loaded.get(&name) {
                Some(served) => {
                    // A loaded model's reason is a failed reload's, if any.
                    let reason = reasons.get(&name).cloned().unwrap_or_default();
                    IndexEntry { name, version: Some(served.version.clone()), state: "READY", reason }
                }
                None => {
                    let reason = reasons.get(&name).cloned().unwrap_or_default();
                    IndexEntry { name, version: None, state: "UNAVAILABLE", reason }
                }
            })
            .collect()
    }
}
