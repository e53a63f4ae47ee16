//! Model control: load, reload and unload, and the repository index, on the server's model
//! table (`ServerState`). Loads and unloads are serialised (`control_lock`); an unload first
//! removes the model from the table (new calls get NOT_FOUND at once), then waits for the
//! calls already accepted to complete.
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

use std::{sync::Arc, time::Instant};

use corral_engine::{Asker, Control};
use corral_runtime::{Model, sync, sync::lock};

use super::{ControlMode, IndexEntry, Served, ServerState, Versions};
use crate::{
    batcher::Batcher,
    error::{CallError, ErrorKind},
    overrides::{self, LoadOverride},
    repository,
    sequence::Sequencer,
    triton,
};

/// The serving configuration from the one an engine completed (`json`), the platform kept;
/// `read` when it cannot be read (said in the log).
fn completed(name: &str, json: &str, dir: &std::path::Path, read: repository::ServeConfig) -> repository::ServeConfig {
    let served = corral_config::from_json(json)
        .map_err(|e| e.to_string())
        .and_then(|config| repository::serve_config(&config, dir));
    match served {
        Ok(config) => repository::ServeConfig { platform: read.platform, ..config },
        Err(error) => {
            tracing::warn!(model = name, "the completed configuration is not served ({error}); the one read is");
            read
        }
    }
}

impl ServerState {
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
        self.load_within(name, over, None).await
    }

    /// The model control for a request asked by a running model (`model`): waited for at most
    /// the execution timeout, as a BLS call that cannot start. The control may be held by an
    /// unload or reload of that very model, which waits for the model's accepted calls (this
    /// one among them) to end: waiting on without a bound would never end.
    async fn control_for(&self, model: &str) -> Result<tokio::sync::OwnedMutexGuard<()>, CallError> {
        let waited = self.runtime.exec_timeout();
        match tokio::time::timeout(waited, self.control_lock.clone().lock_owned()).await {
            Ok(held) => Ok(held),
            Err(_) => Err(CallError::new(
                ErrorKind::Unavailable,
                format!(
                    "model control stayed busy for {:.1} s (CORRAL_EXEC_TIMEOUT) while model '{model}' asked for it: a load or unload is running, perhaps one of '{model}' itself, which waits for its calls (this one among them) to end; ask again after this execute, or use the repository API",
                    waited.as_secs_f64()
                ),
            )),
        }
    }

    /// [`ServerState::load_as`]; `asker`: a running model's request, which waits for the model
    /// control at most the execution timeout ([`ServerState::control_for`]).
    async fn load_within(
        self: &Arc<Self>,
        name: &str,
        over: LoadOverride,
        asker: Option<&str>,
    ) -> Result<(), CallError> {
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
        let _one_at_a_time = match asker {
            Some(model) => self.control_for(model).await?,
            None => self.control_lock.clone().lock_owned().await,
        };
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
        if let Some((plan, numbers)) = repo_model.ensemble {
            return self.load_ensemble(name, repo_model.config, plan, &numbers, old.clone(), failed);
        }
        let config = repo_model.config;
        // Steps 1 and 2 of the module's protocol: keep, load or replace each version.
        let mut kept = Versions::new();
        let mut started: Vec<(u64, Model, String)> = Vec::new();
        let mut replacements: Vec<corral_runtime::Replacement> = Vec::new();
        let mut failure: Option<(u64, String)> = None;
        for version in &repo_model.versions {
            let def = self.served_def(&version.def);
            let fingerprint = fingerprint(&def, &config);
            let result = match old.get(&version.number) {
                Some(served) if served.fingerprint == fingerprint => {
                    kept.insert(version.number, served.clone());
                    continue;
                }
                Some(_) => self.runtime.replace(def.clone()).map(|replacement| {
                    let model = replacement.model.clone();
                    replacements.push(replacement);
                    model
                }),
                None => self.runtime.load(def.clone()),
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
                if !old.values().any(|s| s.model().is_some_and(|m| m.name() == model.name())) {
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
        // A configuration its engine completed (a Python model's auto_complete_config) is the
        // one served, as Triton serves the completed configuration.
        let config = match started.first().and_then(|(_, model, _)| model.completed_config()) {
            Some(json) => completed(name, json, &self.repository.join(name), config),
            None => config,
        };
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
                unit: super::Unit::Model(model),
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

    /// Loads an ensemble: its steps' models first (those not loaded yet, as Triton's explicit
    /// mode loads an ensemble's dependencies), then Triton's checks of the ensemble against
    /// them, then its versions, which hold no cores.
    fn load_ensemble(
        self: &Arc<Self>,
        name: &str,
        config: crate::repository::ServeConfig,
        plan: Arc<crate::ensemble::Plan>,
        numbers: &[u64],
        old: Versions,
        failed: impl Fn(CallError, String) -> Result<(), CallError>,
    ) -> Result<(), CallError> {
        let first = numbers.first().copied().unwrap_or(1);
        let refuse = |reason: String| {
            if old.is_empty() {
                lock(&self.failed_loads).insert(name.to_owned());
            }
            failed(triton::version_load_failed(name, first, &reason), reason)
        };
        let mut steps: Vec<&str> = plan.steps.iter().map(|s| s.model.as_str()).collect();
        steps.dedup();
        let known = repository::names(&self.repository);
        let absent: Vec<String> = steps
            .iter()
            .filter(|m| !known.iter().any(|k| k == *m) && self.versions(m).is_empty())
            .map(|m| (*m).to_owned())
            .collect();
        if !absent.is_empty() {
            return refuse(crate::ensemble::missing(name, &absent));
        }
        let path = {
            let mut loading = lock(&self.loading);
            loading.push(name.to_owned());
            loading.clone()
        };
        let mut result = Ok(());
        for step in &steps {
            if path.iter().any(|p| p == step) {
                result = Err(crate::ensemble::circular(&path, step));
                break;
            }
            if !self.versions(step).is_empty() {
                continue;
            }
            if let Err(error) = self.load_blocking(step, &LoadOverride::default()) {
                let why = lock(&self.reasons).get(*step).cloned().unwrap_or(error.message);
                result = Err(format!(
                    "ensemble '{name}' depends on '{step}' which has no loaded version. Model '{step}' loading failed with error: {why}"
                ));
                break;
            }
        }
        lock(&self.loading).pop();
        if let Err(reason) = result {
            return refuse(reason);
        }
        let mut config = config;
        match crate::ensemble::check(&plan, config.max_batch_size, |m| self.step_model(m)) {
            Err(reason) => return refuse(reason),
            // A decoupled step makes the ensemble decoupled, as Triton reports it.
            Ok(decoupled) if decoupled => {
                config.decoupled = true;
                config.model_config.model_transaction_policy =
                    Some(corral_config::ModelTransactionPolicy { decoupled: true });
            }
            Ok(_) => {}
        }
        let fingerprint = format!("ensemble {:?}", config.model_config);
        let mut versions = Versions::new();
        for &number in numbers {
            let served = Served {
                name: name.to_owned(),
                version: number.to_string(),
                number,
                unit: super::Unit::Ensemble(plan.clone()),
                config: config.clone(),
                counters: self.counters_for(name, number),
                fingerprint: fingerprint.clone(),
                batcher: None,
                sequencer: None,
            };
            versions.insert(number, Arc::new(served));
        }
        lock(&self.reasons).remove(name);
        lock(&self.failed_loads).remove(name);
        sync::write(&self.models).insert(name.to_owned(), versions);
        tracing::info!(model = name, versions = ?numbers, steps = ?steps, "serving (an ensemble)");
        // Replaced ensemble versions hold no cores; a model that became an ensemble leaves
        // its runtime models.
        for model in old.values().filter_map(|s| s.model()) {
            let _ = self.runtime.unload(model.name());
        }
        Ok(())
    }

    /// A loaded model as an ensemble's load checks it: its highest version's tensors (shapes
    /// with the batch dimension, as declared, else as its model gives them) and its versions.
    fn step_model(&self, name: &str) -> Option<crate::ensemble::StepModel> {
        let versions = self.versions(name);
        let top = versions.last()?;
        let optional = |input: &str| top.config.inputs.iter().any(|d| d.spec.name == input && d.optional);
        Some(crate::ensemble::StepModel {
            max_batch_size: top.config.max_batch_size,
            inputs: top
                .views(&top.config.inputs, top.input_specs())
                .into_iter()
                .map(|spec| {
                    let optional = optional(&spec.name);
                    (spec, optional)
                })
                .collect(),
            outputs: top.views(&top.config.outputs, top.output_specs()),
            versions: versions.iter().map(|s| s.number).collect(),
            decoupled: top.config.decoupled,
        })
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
            let Some(runtime_name) = served.model().map(|m| m.name().to_owned()) else { continue };
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
            if let Some(versions) = this.remove(&name) {
                this.drain(&name, versions);
            }
        })
        .await
        .map_err(|e| CallError::new(ErrorKind::Internal, format!("unload task failed: {e}")))
    }

    /// Unloads `name` as a running model asks (python_backend's `unload_model`): answered once
    /// it is out of the table (new calls no longer reach it), while the calls it accepted drain
    /// behind, the model control held until they did: a model unloading itself from its
    /// `execute` would otherwise wait for itself. Triton's unload does not wait either. With
    /// `dependents`, the steps an ensemble loaded along with it go too, those no other loaded
    /// ensemble uses.
    pub async fn unload_asked(self: &Arc<Self>, asker: &str, name: &str, dependents: bool) -> Result<(), CallError> {
        self.refuse_without_control()?;
        let held = self.control_for(asker).await?;
        let (mut names, mut removed) = (vec![name.to_owned()], Vec::new());
        while let Some(next) = names.pop() {
            let Some(versions) = self.remove(&next) else { continue };
            if dependents {
                names.extend(self.orphaned_steps(&versions));
            }
            removed.push((next, versions));
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _held = held;
            for (name, versions) in removed {
                this.drain(&name, versions);
            }
        });
        Ok(())
    }

    /// The steps of the ensembles among `versions` that no loaded ensemble uses.
    fn orphaned_steps(&self, versions: &Versions) -> Vec<String> {
        let models = sync::read(&self.models);
        let used: std::collections::BTreeSet<&str> = models
            .values()
            .flat_map(|v| v.values())
            .filter_map(|served| served.ensemble())
            .flat_map(|plan| plan.steps.iter().map(|step| step.model.as_str()))
            .collect();
        let steps: std::collections::BTreeSet<String> = versions
            .values()
            .filter_map(|served| served.ensemble())
            .flat_map(|plan| plan.steps.iter().map(|step| step.model.clone()))
            .filter(|step| !used.contains(step.as_str()) && models.contains_key(step))
            .collect();
        steps.into_iter().collect()
    }

    /// Takes `name` out of the table (new calls get NOT_FOUND at once); its versions, if it
    /// was loaded.
    fn remove(&self, name: &str) -> Option<Versions> {
        lock(&self.failed_loads).remove(name);
        let removed = sync::write(&self.models).remove(name)?;
        lock(&self.reasons).insert(name.to_owned(), "unloaded".to_owned());
        Some(removed)
    }

    /// Stops what [`ServerState::remove`] took out, once the calls it accepted are answered.
    fn drain(&self, name: &str, versions: Versions) {
        for served in versions.values() {
            let Some(model) = served.model() else { continue };
            if let Err(error) = self.runtime.unload(model.name()) {
                tracing::warn!(model = name, version = served.number, "unload: {error}");
            }
        }
        tracing::info!(model = name, "unloaded");
    }

    /// Model control a running model asks for (python_backend's model loading API): loads and
    /// unloads as the repository API's (explicit mode only, Triton's checks and words);
    /// readiness as Triton's `ModelIsReady`, for which a model or version not loaded is an
    /// error (`Request for unknown model: ...`), not `false`. A load or unload asked from
    /// `initialize` or `finalize` is refused: those mostly run inside the server's load or
    /// unload of the asking model, which holds the model control (and the runtime's
    /// placement) until they return, so it could never start (and an instance the autopilot
    /// or a restart starts is refused alike, one rule for every `initialize`). A load or unload
    /// asked from `execute` waits for the model control at most the execution timeout: an
    /// unload or reload of the asking model holds it while the model's calls drain.
    pub async fn model_control(self: &Arc<Self>, asker: &Asker, request: Control) -> Result<bool, CallError> {
        match request {
            Control::Ready { model, version } => Ok(self.ready(&*self.model(&model, &version)?)),
            Control::Load { model, .. } | Control::Unload { model, .. } if asker.inside_control => Err(CallError::new(
                ErrorKind::Unavailable,
                format!(
                    "model '{}' asked to load or unload '{model}' from initialize or finalize, which run while an instance of '{}' starts or ends (inside a load or unload of it, which holds the model control until they return), where only readiness is answered; ask from execute (or use the repository API)",
                    asker.model, asker.model
                ),
            )),
            Control::Load { model, config, files } => {
                let mut over = LoadOverride::default();
                if !config.is_empty() {
                    over.config(&config);
                }
                for (key, bytes) in files {
                    if !key.starts_with("file:") {
                        return Err(triton::unrecognized_load_parameter(&key));
                    }
                    over.file(&key, bytes);
                }
                self.refuse_without_control()?;
                self.load_within(&model, over, Some(&asker.model)).await.map(|()| true)
            }
            Control::Unload { model, dependents } => {
                self.unload_asked(&asker.model, &model, dependents).await.map(|()| true)
            }
        }
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

/// What a version is loaded from, to tell at a reload whether it changed.
fn fingerprint(def: &corral_runtime::ModelDef, config: &repository::ServeConfig) -> String {
    let file = match &def.source {
        corral_engine::ModelSource::Onnx(path) => std::fs::metadata(path)
            .map(|m| format!("{} bytes, modified {:?}", m.len(), m.modified().ok()))
            .unwrap_or_default(),
        corral_engine::ModelSource::Python(model) => std::fs::metadata(&model.model_py)
            .map(|m| format!("{} bytes, modified {:?}", m.len(), m.modified().ok()))
            .unwrap_or_default(),
        corral_engine::ModelSource::Sim(_) => String::new(),
    };
    format!("{def:?} {config:?} {file}")
}
