//! What a runtime has loaded ([`Loaded`]: the layout, and the models by name, under the
//! runtime's one lock) and what is read from it for others: the models and instances on each
//! core (the owner records `corral ls` reads) and each core's statistics ([`CoreStats`],
//! `Runtime::core_stats` and the live publication alike).

use std::{collections::BTreeMap, time::Duration};

use corral_cores::Lease;
use corral_placement::Layout;

use crate::{model::Model, scheduler::Scheduler};

/// What a runtime has loaded: the placement, the models by name, and what happened to them.
pub(crate) struct Loaded {
    pub(crate) layout: Layout,
    pub(crate) models: BTreeMap<String, Model>,
    pub(crate) timeline: crate::timeline::Timeline,
}

/// Per process core, the models on it (each named once).
fn models_per_core(layout: &Layout) -> Vec<Vec<String>> {
    let mut per_core = vec![Vec::new(); layout.cores()];
    for placed in layout.placed() {
        for core in placed.cores.cores() {
            if !per_core[core].contains(&placed.model) {
                per_core[core].push(placed.model.clone());
            }
        }
    }
    per_core
}

/// Per-core statistics of a runtime.
pub(crate) fn core_stats(lease: &Lease, scheduler: &Scheduler, loaded: &Loaded) -> Vec<CoreStats> {
    let per_core = models_per_core(&loaded.layout);
    let name_of = |id| loaded.models.values().find(|m| m.inner.id == id).map(|m| m.name().to_owned());
    // The scheduler counts for every core the lease may grow to; the lease's come first.
    let globals = lease.globals();
    scheduler
        .counters()
        .into_iter()
        .zip(globals)
        .enumerate()
        .map(|(index, (c, global))| CoreStats {
            index,
            global,
            cpus: lease.core_cpus(index),
            executions: c.executions,
            busy: c.busy,
            switches: c.switches,
            models: per_core.get(index).cloned().unwrap_or_default(),
            last_model: c.last_model.and_then(name_of),
        })
        .collect()
}

/// Writes which instances sit on each core, and each model's engine, into the lease's owner
/// records (what `corral ls` reads).
pub(crate) fn publish_models(lease: &Lease, loaded: &Loaded) {
    let engines = loaded.models.iter().map(|(name, model)| (name.clone(), model.engine())).collect();
    lease.publish_models(&instances_per_core(&loaded.layout), &engines);
}

/// Per process core, the instances on it as `name[replica]`, for the owner records.
fn instances_per_core(layout: &Layout) -> Vec<Vec<String>> {
    let mut per_core = vec![Vec::new(); layout.cores()];
    for placed in layout.placed() {
        for core in placed.cores.cores() {
            per_core[core].push(corral_cores::instance_label(&placed.model, placed.replica));
        }
    }
    per_core
}

/// Per-core statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreStats {
    /// Process-relative index.
    pub index: usize,
    /// Device (global) index.
    pub global: usize,
    pub cpus: Vec<usize>,
    pub executions: u64,
    pub busy: Duration,
    pub switches: u64,
    pub models: Vec<String>,
    /// The model that ran on this core last, while it is loaded.
    pub last_model: Option<String>,
}
