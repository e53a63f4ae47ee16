//! The autopilot (SPEC §11): a thread per runtime that, every interval, reads each model's
//! counters, asks `corral_dispatch::autopilot::decide` (the same function the planner's
//! simulator runs) which instances to start and retire, and applies its moves.
//!
//! The same thread follows the process's own cores on the real `cpu` device, with the
//! autopilot on or off (`limits.rs` says how): after a look at which cores left or joined,
//! a tick without the autopilot's turn only relocates the instances of cores that left.
//!
//! # Protocol
//!
//! 1. Under the loaded models' lock, copy the models (handles) and the cores; release it.
//! 2. Per model, the demand since the last interval (`Estimator`: arrival rate × mean
//!    execution time, plus the backlog of waiting calls) and its recent peak. The first
//!    interval only brings models inside their bounds.
//! 3. Apply each move to its model: a new instance is started (session prepared, worker
//!    pinned) before it takes calls; a retired one takes no new call and its worker ends
//!    after the calls it accepted (see `model.rs`). A relocation moves the live instance
//!    when its session can move itself (a Python model's stub: its worker and every thread
//!    of its stub re-pinned, no second `initialize`), else starts one there and retires the
//!    old. A start that fails (the model file gone, an engine error) changes nothing and is
//!    logged.
//! 4. Under the lock again, the layout is brought up to date with the models' instances and
//!    published (`corral ls`), each move logged at info and counted per model.
//!
//! Calls never wait on the controller: it takes the loaded models' lock only for copies, and
//! a model's instance list only to replace it. It holds the runtime's parts by `Arc`, never
//! the runtime; the runtime stops and joins it when it drops, before its models.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use corral_cores::Lease;
use corral_cores::sync::lock;
use corral_dispatch::autopilot::{Counts, Estimator, Move, Reading, decide};
use corral_placement::Placement;

use crate::{
    limits::{Limits, WATCH_INTERVAL, release_left, warn_shared},
    loaded::{Loaded, publish_models},
    model::Model,
    periodic::{First, Periodic},
};

/// What the controller works on.
pub(crate) struct ControllerParts {
    pub(crate) lease: Arc<Lease>,
    pub(crate) loaded: Arc<Mutex<Loaded>>,
    /// The runtime's: a tick and a load or replace never place on the same free cores at once.
    pub(crate) load_lock: Arc<Mutex<()>>,
}

/// One model's state between intervals.
struct Track {
    id: crate::scheduler::ModelId,
    estimate: Estimator,
}

/// Starts the controller's [`Periodic`] thread, deciding every `interval` (`None`: the
/// autopilot is off), and with `watch` following the process's cores; `None` (with a
/// warning) when no thread can start.
pub(crate) fn start(sources: ControllerParts, interval: Option<Duration>, watch: bool) -> Option<Periodic> {
    let wake = match (interval, watch) {
        (Some(interval), true) => interval.min(WATCH_INTERVAL),
        (Some(interval), false) => interval,
        (None, _) => WATCH_INTERVAL,
    };
    let mut tracks: BTreeMap<String, Track> = BTreeMap::new();
    let mut last = Instant::now();
    let mut limits = Limits::new(sources.lease.len());
    let step = move || {
        let moved = watch && limits.look(&sources.lease, &sources.loaded);
        let now = Instant::now();
        let due = interval.is_some_and(|interval| now.duration_since(last) >= interval);
        if due || moved || limits.gone_but_held(&sources.lease) {
            let autopilot = due.then(|| now.duration_since(last).as_secs_f64());
            tick(&sources, &mut tracks, autopilot, limits.gone());
            if due {
                last = now;
            }
        }
    };
    let failed = "cannot start the autopilot thread; cores stay where they are";
    Periodic::start("corral-pilot", wake, First::AfterInterval, failed, step)
}

fn counts(model: &Model) -> Counts {
    let stats = model.stats();
    Counts {
        requests: stats.requests,
        executions: stats.executions,
        compute_ns: u64::try_from(stats.compute_time.as_nanos()).unwrap_or(u64::MAX),
    }
}

/// Steps 1 to 4 of the protocol, once: with the autopilot's `seconds` since its last
/// decision, or, with `None`, relocations off the `gone` cores only.
fn tick(sources: &ControllerParts, tracks: &mut BTreeMap<String, Track>, seconds: Option<f64>, gone: &[bool]) {
    let no_load_meanwhile = lock(&sources.load_lock);
    let (models, cores) = {
        let loaded = lock(&sources.loaded);
        (loaded.models.values().cloned().collect::<Vec<Model>>(), loaded.layout.cores())
    };
    tracks.retain(|name, track| models.iter().any(|m| m.name() == name && m.inner.id == track.id));
    let views: Vec<_> = models
        .iter()
        .map(|model| {
            let instances = model.inner.current();
            // Without the autopilot's turn, every model keeps its count: only relocations.
            let demand = seconds.map(|seconds| {
                let reading = Reading {
                    counts: counts(model),
                    seconds,
                    in_flight: instances.iter().map(|i| i.in_flight.load(Ordering::Acquire)).sum(),
                    instances: instances.len(),
                };
                let track = tracks
                    .entry(model.name().to_owned())
                    .or_insert_with(|| Track { id: model.inner.id, estimate: Estimator::default() });
                track.estimate.observe(reading)
            });
            model.view(&instances, demand)
        })
        .collect();
    let available: Vec<bool> = gone.iter().map(|gone| !gone).collect();
    let moves = decide(&views, cores, &available);
    if moves.is_empty() {
        if release_left(&sources.lease, &models, gone) {
            let loaded = lock(&sources.loaded);
            publish_models(&sources.lease, &loaded);
        }
        return;
    }
    let relocating = moves.iter().any(|m| matches!(m, Move::Relocate { .. }));
    // The cores of each grow and move are taken in the layout now, while no load runs; then
    // the instances start with loads free to run beside (they see those cores taken): starting
    // one may take long (a Python model's stub runs its initialize). The layout is made what
    // the models hold at the end, whatever started.
    let mut reserved = vec![false; models.len()];
    {
        let mut loaded = lock(&sources.loaded);
        for step in &moves {
            let (Move::Grow { model: m, span } | Move::Relocate { model: m, span, .. }) = *step else { continue };
            let model = &models[m];
            if !loaded.models.get(model.name()).is_some_and(|l| Arc::ptr_eq(&l.inner, &model.inner)) {
                continue;
            }
            let mut spans: Vec<_> =
                loaded.layout.placed().iter().filter(|p| p.model == model.name()).map(|p| p.cores).collect();
            spans.push(span);
            loaded.layout.remove(model.name());
            loaded.layout.commit(&Placement { model: model.name().to_owned(), instances: spans, shared: Vec::new() });
            reserved[m] = true;
        }
    }
    drop(no_load_meanwhile);
    let mut changed = vec![false; models.len()];
    let mut events = Vec::new();
    for step in moves {
        let m = match step {
            Move::Grow { model, .. } | Move::Shrink { model, .. } | Move::Relocate { model, .. } => model,
        };
        let model = &models[m];
        let before = model.instances();
        let done = match step {
            Move::Grow { span, .. } => match model.add_instance(span) {
                Ok(_) => {
                    model.inner.moves.grow.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(error) => {
                    tracing::warn!(model = %model.name(), %span, "autopilot: cannot start an instance: {error}; the layout stays");
                    false
                }
            },
            Move::Shrink { id, .. } => {
                let retired = model.retire_instance(id);
                if retired {
                    model.inner.moves.shrink.fetch_add(1, Ordering::Relaxed);
                }
                retired
            }
            // A live instance that can move itself (a Python model's stub, re-pinned) moves;
            // any other is started again on the new cores and the old one retired.
            Move::Relocate { id, span, .. } if model.relocate_instance(id, span) => {
                model.inner.moves.relocate.fetch_add(1, Ordering::Relaxed);
                true
            }
            Move::Relocate { id, span, .. } => match model.add_instance(span) {
                Ok(_) => {
                    // A sequence may have taken a hold since the decision: the old instance
                    // then stays too, and the move counts as a grow.
                    if model.retire_instance(id) {
                        model.inner.moves.relocate.fetch_add(1, Ordering::Relaxed);
                    } else {
                        model.inner.moves.grow.fetch_add(1, Ordering::Relaxed);
                    }
                    true
                }
                Err(error) => {
                    tracing::warn!(model = %model.name(), %span, "autopilot: cannot move an instance: {error}; it stays");
                    false
                }
            },
        };
        if done {
            changed[m] = true;
            let show = |spans: &[corral_placement::CoreSpan]| {
                spans.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" ")
            };
            let kind = match step {
                Move::Grow { .. } => "grow",
                Move::Shrink { .. } => "shrink",
                Move::Relocate { .. } => "move",
            };
            // Whose move: the autopilot's, or one forced by cores that left.
            let whose = if seconds.is_some() { "autopilot" } else { "cores left" };
            let text = format!("{whose}: {kind}: [{}] -> [{}]", show(&before), show(&model.instances()));
            tracing::info!(model = %model.name(), "{text}");
            events.push((kind, model.name().to_owned(), text));
        }
    }
    let mut loaded = lock(&sources.loaded);
    for (kind, model, text) in events {
        loaded.timeline.push(kind, Some(&model), text);
    }
    for (model, _) in models.iter().zip(changed.iter().zip(&reserved)).filter(|(_, (c, r))| **c || **r) {
        // The model may have been unloaded or replaced meanwhile: only its own entry changes.
        if loaded.models.get(model.name()).is_some_and(|m| Arc::ptr_eq(&m.inner, &model.inner)) {
            loaded.layout.remove(model.name());
            loaded.layout.commit(&Placement {
                model: model.name().to_owned(),
                instances: model.instances(),
                shared: Vec::new(),
            });
        }
    }
    release_left(&sources.lease, &models, gone);
    if relocating {
        warn_shared(&loaded.layout, gone);
    }
    publish_models(&sources.lease, &loaded);
}
