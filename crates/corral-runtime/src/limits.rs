//! The process's own cores, followed (SPEC §2): on the real `cpu` device, with the autopilot
//! on or off, the controller's thread (`autopilot.rs`) looks every [`WATCH_INTERVAL`] at the
//! process's cgroup cpuset (`corral_cores::cpuset_cpus`; not a thread's affinity, which a
//! program may narrow for its own reasons). A core with a CPU outside it has *left*: nothing
//! new is placed there, `corral_dispatch::autopilot::decide` relocates its instances (with the
//! autopilot off every model keeps its count, so relocations are the only moves; where the
//! cores left cannot hold them all, instances share, with a warning: [`warn_shared`]), and
//! once no instance runs there its lease is released ([`release_left`]; `corral ls` shows it
//! free). A runtime whose cores came from the default request also follows the CPU quota, and
//! takes cores that join ([`follow_limits`]): past the quota the highest cores leave the same
//! way; below it, cpuset cores it does not use are taken (a core given back returns under its
//! old number, a new one is numbered after the others), and the autopilot, when on, places
//! instances there. Cores are not taken from an explicit request (`NUM_CORES`,
//! `VISIBLE_CORES`, groups) or an inherited lease.
//!
//! A look changes only the layout's cores (`Layout::set_gone`, `set_back`, `add_core`), under
//! the loaded models' lock, and the lease (`Lease::join`, `Lease::release`); moving instances
//! is the controller's tick.

use std::{
    sync::{Mutex, atomic::Ordering},
    time::Duration,
};

use corral_cores::Lease;
use corral_cores::sync::lock;
use corral_placement::Layout;

use crate::{
    loaded::{Loaded, publish_models},
    model::Model,
};

/// How often the process's cores are checked (a change is noticed within about this long).
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// The process's cores as the last look saw them: which of them left.
pub(crate) struct Limits {
    /// Per process core, whether it left (it comes back only by joining again).
    gone: Vec<bool>,
}

impl Limits {
    /// Before the first look: all `cores` of the lease are the process's.
    pub(crate) fn new(cores: usize) -> Limits {
        Limits { gone: vec![false; cores] }
    }

    /// One look at the cpuset (and, for a lease from the default request, the CPU quota):
    /// true when a core left or joined.
    pub(crate) fn look(&mut self, lease: &Lease, loaded: &Mutex<Loaded>) -> bool {
        // One read of the cpuset per look serves both directions.
        let Some(cpuset) = corral_cores::cpuset_cpus() else { return false };
        let left = cores_left(lease, loaded, &cpuset, &mut self.gone);
        let moved = lease.is_by_default() && follow_limits(lease, loaded, cpuset, &mut self.gone);
        left || moved
    }

    /// Per process core, whether it left.
    pub(crate) fn gone(&self) -> &[bool] {
        &self.gone
    }

    /// Whether a core that left is still held (its lease not yet released).
    pub(crate) fn gone_but_held(&self, lease: &Lease) -> bool {
        self.gone.iter().enumerate().any(|(core, gone)| *gone && lease.is_held(core))
    }
}

/// Marks the cores with a CPU outside the process's cpuset `allowed` as gone since the last
/// look (one comes back only through [`follow_limits`]); true when one left now.
fn cores_left(lease: &Lease, loaded: &Mutex<Loaded>, allowed: &[usize], gone: &mut [bool]) -> bool {
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
    let mut loaded = lock(loaded);
    for &core in &left {
        loaded.layout.set_gone(core);
    }
    let names: Vec<String> = left.iter().map(|c| format!("nc{c}")).collect();
    let text = format!("{} left this process's CPUs (its cpuset shrank): moving their instances off", names.join(" "));
    tracing::warn!("{text}");
    loaded.timeline.push("cores-left", None, text);
    true
}

/// With the default request (SPEC §2), the cores the process may have now: the cores of its
/// cpuset `allowed` and affinity, up to what the CPU quota pays for (all read afresh). Past the quota, the highest
/// cores leave as if the cpuset had lost them; below it, cores of the cpuset that this
/// runtime does not use join: a core it gave back under its old number, a new one after the
/// others (lowest device index first, skipping any another process holds). True when a core
/// left or joined.
fn follow_limits(lease: &Lease, loaded: &Mutex<Loaded>, mut allowed: Vec<usize>, gone: &mut Vec<bool>) -> bool {
    // A process narrowed on purpose (`taskset`) stays inside its affinity: the kernel keeps a
    // narrowed affinity when the cpuset grows, and widens one that was not.
    if let Ok(affinity) = corral_cores::allowed_cpus() {
        allowed.retain(|cpu| affinity.contains(cpu));
    }
    // An unreadable quota was reported at the start; the cpuset alone is followed then.
    let quota = corral_cores::cpu_quota().ok().flatten();
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
    let mut loaded = lock(loaded);
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
        let text = format!(
            "{} left this process (the CPU quota is now {quota_text}): moving their instances off",
            names.join(" ")
        );
        tracing::warn!("{text}");
        loaded.timeline.push("cores-left", None, text);
    }
    if !joined.is_empty() {
        let names: Vec<String> = joined.iter().map(|&c| format!("nc{c} (device nc{})", lease.global(c))).collect();
        let text = format!("{} joined this process (its cpuset or CPU quota grew)", names.join(", "));
        tracing::info!("{text}");
        loaded.timeline.push("cores-joined", None, text);
        publish_models(lease, &loaded);
    }
    true
}

/// After cores left: names the cores that instances of several models now share.
pub(crate) fn warn_shared(layout: &Layout, gone: &[bool]) {
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
pub(crate) fn release_left(lease: &Lease, models: &[Model], gone: &[bool]) -> bool {
    let mut released = false;
    for core in (0..gone.len()).filter(|&core| gone[core] && lease.is_held(core)) {
        if !models.iter().any(|m| m.uses_core(core)) && lease.release(core) {
            tracing::info!("nc{core} released: it left this process's CPUs and no instance runs there");
            released = true;
        }
    }
    released
}
