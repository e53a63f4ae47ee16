//! The autopilot (SPEC §11): a thread per runtime that, every interval, reads each model's
//! counters, asks `corral_dispatch::autopilot::decide` (the same function the planner's
//! simulator runs) which instances to start and retire, and applies its moves.
//!
//! The same thread follows the process's own cores (SPEC §2) on the real `cpu` device, with
//! the autopilot on or off: every [`WATCH_INTERVAL`] it reads the process's cgroup cpuset
//! (`corral_cores::cpuset_cpus`; not a thread's affinity, which a program may narrow for its
//! own reasons). A core with a CPU outside it has *left*: nothing new is placed there, `decide` relocates
//! its instances (with the autopilot off every model is pinned, so relocations are the only
//! moves; where the cores left cannot hold them all, instances share, with a warning), and
//! once no instance runs there its lease is released (`corral ls` shows it free). A runtime
//! whose cores came from the default request also follows the CPU quota, and takes cores
//! that join ([`follow_limits`]): past the quota the highest cores leave the same way; below
//! it, cpuset cores it does not use are taken (a core given back returns under its old
//! number, a new one is numbered after the others), and the autopilot, when on, places
//! instances there. Cores are not taken from an explicit request (`NUM_CORES`,
//! `VISIBLE_CORES`, groups) or an inherited lease.
//!
//! # Protocol
//!
//! 1. Under the loaded models' lock, copy the models (handles) and the cores; release it.
//! 2. Per model, the demand since the last interval (`Estimator`: arrival rate × mean
//!    execution time, plus the backlog of waiting calls) and its recent peak. The first
//!    interval only brings models inside their bounds.
//! 3. Apply each move to its model: a new instance is started (session prepared, worker
//!    pinned) before it takes calls; a retired one takes no new call and its worker ends
//!    after the calls it accepted (see `model.rs`). A start that fails (the model file gone,
//!    an engine error) changes nothing and is logged.
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
    model::Model,
    periodic::{First, Periodic},
    publish::Loaded,
};

/// How often the process's cores are checked (a change is noticed within about this long).
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

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
    let mut gone = vec![false; sources.lease.len()];
    let step = move || {
        // One read of the cpuset per look serves both directions.
        let cpuset = if watch { corral_cores::cpuset_cpus() } else { None };
        let left = cpuset.as_deref().is_some_and(|cpuset| cores_left(&sources, cpuset, &mut gone));
        let limits =
            sources.lease.is_by_default() && cpuset.is_some_and(|cpuset| follow_limits(&sources, cpuset, &mut gone));
        let now = Instant::now();
        let due = interval.is_some_and(|interval| now.duration_since(last) >= interval);
        if due || left || limits || gone_but_held(&sources, &gone) {
            let autopilot = due.then(|| now.duration_since(last).as_secs_f64());
            tick(&sources, &mut tracks, autopilot, &gone);
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

/// Marks the cores with a CPU outside the process's cpuset `allowed` as gone since the last
/// look (one comes back only through [`follow_limits`]); true when one left now.
fn cores_left(sources: &ControllerParts, allowed: &[usize], gone: &mut [bool]) -> bool {
    let lease = &sources.lease;
    let mut left = Vec::new();
    for (core, gone) in gone.iter_mut().enumerate().filter(|(_, gone)| !**gone) {
        let cpus = lease.core_cpus(core);
        if cpus.iter().any(|cpu| !allowed.contains(cpu)) {
            *gone = true;
            left.push(core);
        }
    }
    if left.is_empty() {
        return false;
    }
    let mut loaded = lock(&sources.loaded);
    for &core in &left {
        loaded.layout.set_gone(core);
    }
    let names: Vec<String> = left.iter().map(|c| format!("nc{c}")).collect();
    tracing::warn!("{} left this process's CPUs (its cpuset shrank): moving their instances off", names.join(" "));
    true
}

/// With the default request (SPEC §2), the cores the process may have now: the cores of its
/// cpuset `allowed` and affinity, up to what the CPU quota pays for (all read afresh). Past the quota, the highest
/// cores leave as if the cpuset had lost them; below it, cores of the cpuset that this
/// runtime does not use join: a core it gave back under its old number, a new one after the
/// others (lowest device index first, skipping any another process holds). True when a core
/// left or joined.
fn follow_limits(sources: &ControllerParts, mut allowed: Vec<usize>, gone: &mut Vec<bool>) -> bool {
    // A process narrowed on purpose (`taskset`) stays inside its affinity: the kernel keeps a
    // narrowed affinity when the cpuset grows, and widens one that was not.
    if let Ok(affinity) = corral_cores::allowed_cpus() {
        allowed.retain(|cpu| affinity.contains(cpu));
    }
    // An unreadable quota was reported at the start; the cpuset alone is followed then.
    let quota = corral_cores::cpu_quota().ok().flatten();
    let lease = &sources.lease;
    let device = lease.host_device();
    let cap = quota.as_ref().map_or(usize::MAX, |q| q.cores(device.cpus_per_core()));
    let globals = lease.globals();
    let mut active: Vec<usize> = (0..globals.len()).filter(|&i| !gone[i]).collect();
    active.sort_by_key(|&i| globals[i]);
    let mut left = Vec::new();
    if active.len() > cap {
        left = active.split_off(cap);
        left.iter().for_each(|&i| gone[i] = true);
    }
    let mut joined = Vec::new();
    let inside = |g: usize| {
        let cpus = device.cpus(g);
        !cpus.is_empty() && cpus.iter().all(|cpu| allowed.contains(cpu))
    };
    for global in (0..device.len()).filter(|&g| inside(g)) {
        if active.len() + joined.len() >= cap {
            break;
        }
        if globals.iter().position(|&g| g == global).is_some_and(|i| !gone[i]) {
            continue;
        }
        match lease.join(global) {
            Ok(relative) => {
                if relative == gone.len() {
                    gone.push(false);
                } else {
                    gone[relative] = false;
                }
                joined.push(relative);
            }
            // Held by another process, or the registry busy: perhaps at the next look.
            Err(corral_cores::JoinError::Busy(_) | corral_cores::JoinError::Allocating) => {}
            Err(error) => {
                // Said once: the look repeats every half second and would repeat it.
                static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
                if !SAID.swap(true, Ordering::Relaxed) {
                    tracing::warn!("cannot take nc{global}, which joined this process's CPUs: {error}");
                }
                break;
            }
        }
    }
    if left.is_empty() && joined.is_empty() {
        return false;
    }
    let mut loaded = lock(&sources.loaded);
    for &core in &left {
        loaded.layout.set_gone(core);
    }
    for &core in &joined {
        if core == loaded.layout.cores() {
            loaded.layout.add_core();
        } else {
            loaded.layout.set_back(core);
        }
    }
    let quota_text = quota.map_or_else(|| "none".to_owned(), |q| q.to_string());
    if !left.is_empty() {
        let names: Vec<String> = left.iter().map(|c| format!("nc{c}")).collect();
        tracing::warn!(
            "{} left this process (the CPU quota is now {quota_text}): moving their instances off",
            names.join(" ")
        );
    }
    if !joined.is_empty() {
        let names: Vec<String> = joined.iter().map(|&c| format!("nc{c} (device nc{})", lease.global(c))).collect();
        tracing::info!("{} joined this process (its cpuset or CPU quota grew)", names.join(", "));
        sources.lease.publish_models(&crate::publish::instances_per_core(&loaded.layout));
    }
    true
}

/// Whether a core that left is still held (its lease not yet released).
fn gone_but_held(sources: &ControllerParts, gone: &[bool]) -> bool {
    gone.iter().enumerate().any(|(core, gone)| *gone && sources.lease.is_held(core))
}

/// Steps 1 to 4 of the protocol, once: with the autopilot's `seconds` since its last
/// decision, or, with `None`, relocations off the `gone` cores only.
fn tick(sources: &ControllerParts, tracks: &mut BTreeMap<String, Track>, seconds: Option<f64>, gone: &[bool]) {
    let _no_load_meanwhile = lock(&sources.load_lock);
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
        if release_left(sources, &models, gone) {
            let loaded = lock(&sources.loaded);
            sources.lease.publish_models(&crate::publish::instances_per_core(&loaded.layout));
        }
        return;
    }
    let relocating = moves.iter().any(|m| matches!(m, Move::Relocate { .. }));
    let mut changed = vec![false; models.len()];
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
            tracing::info!(
                model = %model.name(),
                "{}: {}: [{}] -> [{}]",
                // Whose move: the autopilot's, or one forced by cores that left.
                if seconds.is_some() { "autopilot" } else { "cores left" },
                match step {
                    Move::Grow { .. } => "grow",
                    Move::Shrink { .. } => "shrink",
                    Move::Relocate { .. } => "move",
                },
                show(&before),
                show(&model.instances())
            );
        }
    }
    let mut loaded = lock(&sources.loaded);
    for (model, _) in models.iter().zip(&changed).filter(|(_, c)| **c) {
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
    release_left(sources, &models, gone);
    if relocating {
        warn_shared(&loaded.layout, gone);
    }
    sources.lease.publish_models(&crate::publish::instances_per_core(&loaded.layout));
}

/// After cores left: names the cores that instances of several models now share.
fn warn_shared(layout: &corral_placement::Layout, gone: &[bool]) {
    for core in (0..layout.cores()).filter(|&c| !gone[c]) {
        let mut on: Vec<&str> =
            layout.placed().iter().filter(|p| p.cores.contains(core)).map(|p| p.model.as_str()).collect();
        on.sort_unstable();
        on.dedup();
        if on.len() > 1 {
            tracing::warn!("nc{core} is shared by {} now that the process has fewer cores", on.join(", "));
        }
    }
}

/// Releases the lease of each core that left once no instance runs there any more (a retired
/// one finishes its accepted calls first); true when one was released.
fn release_left(sources: &ControllerParts, models: &[Model], gone: &[bool]) -> bool {
    let mut released = false;
    for core in (0..gone.len()).filter(|&core| gone[core] && sources.lease.is_held(core)) {
        if !models.iter().any(|m| m.uses_core(core)) && sources.lease.release(core) {
            tracing::info!("nc{core} released: it left this process's CPUs and no instance runs there");
            released = true;
        }
    }
    released
}
