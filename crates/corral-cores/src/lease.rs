//! A lease: the cores a process owns, as open and `flock`ed lock files.
//!
//! Dropping a [`Lease`] (or dying) releases it. Before its files close, `Drop` truncates the
//! owner records it wrote, so a reader never sees a stale record for a free core (and would
//! ignore one anyway: a record only counts while its lock is held by a live process).
//! Handing a lease to a child and adopting it there is `inherit.rs`; the live counters a
//! lease publishes beside its first lock file are `live.rs`.

use std::{
    fs::File,
    os::{
        fd::{AsRawFd, RawFd},
        unix::fs::FileExt,
    },
};

use crate::{
    core_set::{CoreRange, CoreSet},
    device::{Device, DeviceSpec},
    live::{self, Publication},
    procfs,
    record::{OwnerRecord, now_unix_ms},
    registry::Registry,
};

/// One open lock file.
#[derive(Debug)]
pub(crate) struct SlotFile {
    pub(crate) file: File,
    pub(crate) name: String,
    /// False when the file could only be opened read-only (it still locks, but no record).
    pub(crate) writable: bool,
}

/// Cores owned by this process until the lease is dropped or the process dies.
#[must_use = "dropping a lease releases its cores at once"]
#[derive(Debug)]
pub struct Lease {
    device: DeviceSpec,
    /// Global indices; process core `i` is the `i`-th, ascending.
    cores: CoreSet,
    /// Per core (relative index), its host CPUs; empty on `sim`.
    core_cpus: Vec<Vec<usize>>,
    /// Legacy groups, process-relative; empty when none were asked for.
    groups: Vec<CoreRange>,
    pub(crate) files: Vec<SlotFile>,
    /// The publication file beside the first slot; `None` when it cannot be opened for writing.
    live: Option<SlotFile>,
}

impl Lease {
    pub(crate) fn new(
        device: &Device,
        cores: CoreSet,
        groups: Option<&[usize]>,
        files: Vec<SlotFile>,
        live: Option<SlotFile>,
    ) -> Lease {
        let mut first = 0;
        let groups = groups
            .unwrap_or_default()
            .iter()
            .map(|&size| {
                let group = CoreRange::new(first, size);
                first += size;
                group
            })
            .collect();
        Lease {
            device: device.spec().clone(),
            core_cpus: cores.iter().map(|i| device.cpus(i).to_vec()).collect(),
            cores,
            groups,
            files,
            live,
        }
    }

    pub fn device(&self) -> &DeviceSpec {
        &self.device
    }

    /// The leased cores, by global (device) index; consecutive or not.
    pub fn cores(&self) -> &CoreSet {
        &self.cores
    }

    /// Number of cores; processes number them `0..len()`, in ascending global order.
    pub fn len(&self) -> usize {
        self.core_cpus.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The host CPUs behind process core `relative` (empty on `sim`).
    pub fn core_cpus(&self, relative: usize) -> &[usize] {
        &self.core_cpus[relative]
    }

    /// Every host CPU behind the lease, ascending (empty on `sim`).
    pub fn cpus(&self) -> Vec<usize> {
        let mut cpus: Vec<usize> = self.core_cpus.iter().flatten().copied().collect();
        cpus.sort_unstable();
        cpus
    }

    /// Legacy NeuronCore groups (process-relative), in order; empty when none were asked for.
    pub fn groups(&self) -> &[CoreRange] {
        &self.groups
    }

    /// Names another process as the owner in the records (a launcher naming its child).
    pub fn set_owner(&self, pid: u32, command: &str) {
        let record = OwnerRecord {
            pid,
            start_ticks: procfs::start_ticks(pid).unwrap_or(0),
            command: procfs::shorten(command),
            since_unix_ms: now_unix_ms(),
            device: self.device.to_string(),
            cores: self.cores.to_env_value(),
            models: Vec::new(),
        };
        self.write_record(&record);
    }

    /// Publishes which instances sit on each core (by process-relative index, labelled
    /// `name[replica]`) in the owner records, so `corral ls` can show them next to the owner.
    pub fn publish_models(&self, per_core: &[Vec<String>]) {
        let mut record = OwnerRecord::for_this_process(&self.device.to_string(), &self.cores);
        record.models = per_core.to_vec();
        self.write_record(&record);
    }

    pub(crate) fn write_record(&self, record: &OwnerRecord) {
        let mut line = serde_json::to_vec(record).expect("an owner record always serializes");
        line.push(b'\n');
        for slot in self.files.iter().filter(|s| s.writable) {
            // Write first, then cut: a reader never sees an empty file while the core is held,
            // and stops at the first newline, so a longer old record's tail is never read.
            let written = slot.file.write_all_at(&line, 0).and_then(|()| slot.file.set_len(line.len() as u64));
            if let Err(error) = written {
                tracing::warn!(slot = %slot.name, %error, "cannot write the owner record");
            }
        }
    }

    /// Rewrites this lease's live publication (see `live.rs`); a no-op when its file could
    /// not be opened for writing. Not for the hot path: the caller publishes on a timer.
    pub fn publish_live(&self, publication: &Publication) {
        let Some(slot) = self.live.as_ref().filter(|s| s.writable) else { return };
        let bytes = live::encode_bounded(publication);
        let written = slot.file.write_all_at(&bytes, 0).and_then(|()| slot.file.set_len(bytes.len() as u64));
        if let Err(error) = written {
            tracing::warn!(slot = %slot.name, %error, "cannot write the live publication");
        }
    }

    /// The descriptors whose `flock`s hold this lease. A forked child shares them (and so
    /// keeps the cores held after the parent ends) until it closes its copies; closing them
    /// in the child leaves the parent's locks in place.
    pub fn lock_fds(&self) -> Vec<RawFd> {
        self.files.iter().map(|s| s.file.as_raw_fd()).collect()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        for slot in self.files.iter().chain(&self.live).filter(|s| s.writable) {
            let _ = slot.file.set_len(0);
        }
        // Closing the files (next) releases the locks.
    }
}

/// A new lease on `cores`, its owner record (this process) written into each slot and its
/// publication file opened.
pub(crate) fn lease_with_record(
    registry: &Registry,
    cores: CoreSet,
    groups: Option<&[usize]>,
    files: Vec<SlotFile>,
) -> Lease {
    let device = registry.device();
    let record = OwnerRecord::for_this_process(&device.spec().to_string(), &cores);
    let live = files.first().and_then(|first| match registry.open_slot(&live::live_name(&first.name)) {
        Ok(slot) => Some(slot),
        Err(error) => {
            tracing::warn!(%error, "cannot open the live publication file; top and monitor will not see this process");
            None
        }
    });
    let lease = Lease::new(device, cores, groups, files, live);
    lease.write_record(&record);
    lease
}
