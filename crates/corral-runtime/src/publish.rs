//! The live publication: a thread per runtime that rewrites the lease's
//! [`Publication`](corral_cores::Publication) every [`PUBLISH_INTERVAL`], so `corral top`,
//! `corral monitor` and anyone else on the host can read this process's counters.
//!
//! The thread only reads what the dispatch path already counts (atomics and the scheduler's
//! per-core counters, under its lock for a copy, as `loaded::core_stats` reads them), so calls
//! pay nothing for it. It holds the
//! lease, the scheduler and the loaded models by `Arc`, never the runtime itself: the runtime
//! stops and joins it when it drops, and the lease ends with the runtime as before. The
//! thread is a [`Periodic`] one, publishing first as soon as it starts.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use corral_cores::sync::lock;
use corral_cores::{CoreSet, Lease, LiveCore, LiveModel, PUBLISH_INTERVAL, Publication};

use crate::{
    loaded::{Loaded, core_stats},
    model::Model,
    periodic::{First, Periodic},
    scheduler::Scheduler,
};

/// What a publication is made from.
pub(crate) struct PublisherParts {
    pub(crate) lease: Arc<Lease>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) loaded: Arc<Mutex<Loaded>>,
}

/// Starts publishing; `None` (with a warning) when no thread can be started.
pub(crate) fn start(sources: PublisherParts) -> Option<Periodic> {
    let tag = [corral_cores::PROCESS_TAG, corral_cores::PROCESS_TAG_NEURON]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
    let mut seq = 0;
    let step = move || {
        seq += 1;
        sources.lease.publish_live(&publication(&sources, tag.clone(), seq));
    };
    let failed = "cannot start the live publication thread; top and monitor will not see this process";
    Periodic::start("corral-publish", PUBLISH_INTERVAL, First::Now, failed, step)
}

fn publication(sources: &PublisherParts, tag: Option<String>, seq: u64) -> Publication {
    let pid = std::process::id();
    let (cores, models) = {
        let loaded = lock(&sources.loaded);
        let cores = core_stats(&sources.lease, &sources.scheduler, &loaded);
        (cores, loaded.models.values().cloned().collect::<Vec<Model>>())
    };
    let global = sources.lease.globals();
    Publication {
        pid,
        start_ticks: corral_cores::process_start_ticks(pid).unwrap_or(0),
        tag,
        unix_ms: corral_cores::now_unix_ms(),
        seq,
        cores: cores
            .into_iter()
            .map(|c| LiveCore {
                core: c.global,
                executions: c.executions,
                busy_ns: duration_ns(c.busy),
                switches: c.switches,
                model: c.last_model,
            })
            .collect(),
        models: models.iter().map(|model| live_model(model, &global)).collect(),
        truncated: false,
    }
}

fn live_model(model: &Model, global: &[usize]) -> LiveModel {
    let stats = model.stats();
    let instances = stats.instances.iter().map(|i| {
        let cores = i.cores.cores().filter_map(|relative| global.get(relative).copied());
        CoreSet::from_indices(cores).map(|set| set.to_env_value()).unwrap_or_default()
    });
    LiveModel {
        name: model.name().to_owned(),
        id: model.inner.id,
        instances: instances.collect(),
        requests: stats.requests,
        failures: stats.failures,
        input_failures: stats.input_failures,
        executions: stats.executions,
        queue_depth: stats.instances.iter().map(|i| i.in_flight as u64).collect(),
        latency: model.inner.recorder.latency_buckets(),
        compute: model.inner.recorder.compute_buckets(),
        moves: {
            let (grow, shrink, relocate) = model.moves();
            corral_cores::Moves { grow, shrink, relocate }
        },
        engine: model.engine(),
    }
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
