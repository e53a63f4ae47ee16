//! Device topology and exclusive, cross-process core leases: the foundation of corral.
//!
//! A process names a device ([`DeviceSpec`]), resolves it on this host ([`Device`]), opens
//! the host-wide [`Registry`] of that device and asks it for cores with a [`Request`]
//! (from the environment, flags or code). What it gets is a [`Lease`]: open, `flock`ed lock
//! files that the kernel releases when the process ends, however it ends.
//!
//! This crate starts no threads and does no async; it is the bottom of the dependency graph.
//!
//! ```
//! use corral_cores::{Device, DeviceSpec, Registry, Request};
//!
//! # let dir = tempfile::tempdir().unwrap();
//! let device = Device::open("sim:inf1.xlarge".parse()?)?;
//! let registry = Registry::open(device, dir.path())?;
//! let lease = registry.acquire(&Request::num(2))?;
//! assert_eq!(lease.cores().to_string(), "nc0-nc1");
//! let second = registry.acquire(&Request::num(2))?;
//! assert_eq!(second.cores().to_string(), "nc2-nc3");
//! let err = registry.acquire(&Request::num(1)).unwrap_err();
//! assert!(err.to_string().contains("no core is free"));
//! drop(lease); // nc0-nc1 are free again
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cgroup;
mod core_set;
mod device;
mod folder;
mod inherit;
mod lease;
mod list;
mod live;
mod procfs;
mod record;
mod registry;
mod request;
pub mod sync;
mod take;

pub use cgroup::{CgroupError, CgroupVersion, CpuQuota, cpu_quota, cpuset_cpus, format_cpus};
pub use core_set::{CoreRange, CoreSet, parse_core_list};
pub use device::{
    Device, DeviceError, DeviceSpec, DeviceSpecError, SIM_CORES_MAX, SIM_PRESETS, allowed_cpus, host_cpus,
};
pub use folder::RegistryError;
pub use inherit::{LEASE_ENV, Ticket};
pub use lease::{JoinError, Lease};
pub use list::{format_cpu_list, parse_cpu_list};
pub use live::{
    LATENCY_BUCKETS_PER_OCTAVE, LIVE_BYTES_MAX, LiveCore, LiveModel, ModelEngine, Moves, PROCESS_TAG,
    PROCESS_TAG_NEURON, PUBLISH_INTERVAL, Publication, Unreadable, bucket_percentile, latency_bucket,
    latency_bucket_limit,
};
pub use procfs::{ProcessStat, process_stat};
pub use record::{Owner, OwnerInstance, instance_label, now_unix_ms};

/// Pins the calling thread to `cpus` (none: leaves it as it is, the simulated devices' case).
pub fn pin_thread(cpus: &[usize]) -> Result<(), String> {
    if cpus.is_empty() {
        return Ok(());
    }
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu).map_err(|e| format!("CPU {cpu}: {e}"))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(|e| format!("pinning: {e}"))
}

/// Pins every thread of process `pid` to `cpus` (none: leaves them), as a move re-pins a live
/// process: the threads are listed from `/proc/PID/task` again until a pass finds no new one,
/// since a thread started meanwhile inherits its creator's old affinity. Returns how many
/// threads were pinned; one that ends meanwhile is skipped.
pub fn pin_process(pid: u32, cpus: &[usize]) -> Result<usize, String> {
    if cpus.is_empty() {
        return Ok(0);
    }
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu).map_err(|e| format!("CPU {cpu}: {e}"))?;
    }
    let mut pinned = std::collections::BTreeSet::new();
    for _pass in 0..8 {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| format!("process {pid}: {e}"))?;
        let mut new = 0;
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<i32>().ok()) else { continue };
            if pinned.contains(&tid) {
                continue;
            }
            match nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set) {
                Ok(()) => {}
                Err(nix::errno::Errno::ESRCH) => continue,
                Err(e) => return Err(format!("pinning thread {tid} of process {pid}: {e}")),
            }
            pinned.insert(tid);
            new += 1;
        }
        if new == 0 {
            break;
        }
    }
    Ok(pinned.len())
}

/// The start time of `pid` in clock ticks since boot; with the pid it names one process.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    procfs::start_ticks(pid)
}
pub use registry::{
    ALLOC_WAIT_MAX, AcquireError, CoreStatus, LOCK_DIR_ENV, LiveEntry, Registry, default_lock_dir, longest_free_run,
};
pub use request::{
    CoreRequest, GROUP_SIZES, GROUP_SIZES_NEURON, NUM_CORES, NUM_CORES_NEURON, Request, RequestError, Source, Sources,
    VISIBLE_CORES, VISIBLE_CORES_NEURON, parse_count, parse_group_sizes,
};
pub use take::{DEVICE_ENV, TakeError, TakeSettings, take_cores};
