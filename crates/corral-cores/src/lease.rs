//! A lease: the cores a process owns, as open and `flock`ed lock files.
//!
//! Dropping a [`Lease`] (or dying) releases it. Before its files close, `Drop` truncates the
//! owner records it wrote, so a reader never sees a stale record for a free core (and would
//! ignore one anyway: a record only counts while its lock is held by a live process).
//! [`Lease::release`] gives one core back early (it left the process's cpuset): its records
//! are cut and its locks dropped, its files stay open (their descriptors are the fork
//! handler's), and the process keeps numbering its other cores as before.
//! Handing a lease to a child and adopting it there is `inherit.rs`; the live counters a
//! lease publishes beside its first lock file are `live.rs`.

use std::{
    fs::File,
    os::{
        fd::{AsRawFd, OwnedFd, RawFd},
        unix::fs::FileExt,
    },
    path::PathBuf,
    sync::{Mutex, MutexGuard},
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
    /// Per process core, the indices of its slots in `files`.
    slots: Vec<Vec<usize>>,
    /// Per process core, whether [`Lease::release`] gave it back.
    released: Mutex<Vec<bool>>,
    /// The publication file beside the first held core's first slot; `None` when it cannot be
    /// opened for writing.
    live: Mutex<Option<SlotFile>>,
    /// The registry folder (a descriptor and its path), to open a publication file beside
    /// another core when the first is released.
    folder: Option<(OwnedFd, PathBuf)>,
}

impl Lease {
    pub(crate) fn new(
        device: &Device,
        cores: CoreSet,
        groups: Option<&[usize]>,
        files: Vec<SlotFile>,
        live: Option<SlotFile>,
        folder: Option<(OwnedFd, PathBuf)>,
    ) -> Lease {
        let slots: Vec<Vec<usize>> = cores
            .iter()
            .map(|core| {
                let names = device.slot_names(core);
                files.iter().enumerate().filter(|(_, f)| names.contains(&f.name)).map(|(i, _)| i).collect()
            })
            .collect();
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
            released: Mutex::new(vec![false; cores.len()]),
            cores,
            groups,
            files,
            slots,
            live: Mutex::new(live),
            folder,
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
        let released = self.released();
        let record = OwnerRecord {
            pid,
            start_ticks: procfs::start_ticks(pid).unwrap_or(0),
            command: procfs::shorten(command),
            since_unix_ms: now_unix_ms(),
            device: self.device.to_string(),
            cores: self.held(&released).to_env_value(),
            models: Vec::new(),
        };
        self.write_record(&record, &released);
    }

    /// Publishes which instances sit on each core (by process-relative index, labelled
    /// `name[replica]`) in the owner records, so `corral ls` can show them next to the owner.
    pub fn publish_models(&self, per_core: &[Vec<String>]) {
        let released = self.released();
        let mut record = OwnerRecord::for_this_process(&self.device.to_string(), &self.held(&released));
        // The record numbers the cores it lists: the held ones.
        record.models = per_core
            .iter()
            .zip(released.iter())
            .filter(|(_, gone)| !**gone)
            .map(|(models, _)| models.clone())
            .collect();
        self.write_record(&record, &released);
    }

    fn released(&self) -> MutexGuard<'_, Vec<bool>> {
        self.released.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cores still held (global indices).
    fn held(&self, released: &[bool]) -> CoreSet {
        let held = self.cores.iter().zip(released).filter(|(_, gone)| !**gone).map(|(core, _)| core);
        CoreSet::from_indices(held).unwrap_or_else(|| self.cores.clone())
    }

    /// Whether process core `relative` is still held (not given back by [`Lease::release`]).
    pub fn is_held(&self, relative: usize) -> bool {
        self.released().get(relative).is_some_and(|gone| !gone)
    }

    /// Gives process core `relative` back to the registry before the lease ends (it left the
    /// process's cpuset): its records are cut and its locks released, the others' records
    /// rewritten without it. False when it was released already or is the last one held.
    pub fn release(&self, relative: usize) -> bool {
        let mut released = self.released();
        if released.get(relative).is_none_or(|gone| *gone) || released.iter().filter(|gone| !**gone).count() == 1 {
            return false;
        }
        released[relative] = true;
        for slot in self.slots[relative].iter().map(|&i| &self.files[i]) {
            if slot.writable {
                let _ = slot.file.set_len(0);
            }
            if let Err(error) = slot.file.unlock() {
                tracing::warn!(slot = %slot.name, %error, "cannot release the core's lock");
            }
        }
        // The publication sits beside the first held core: follow it to the new first one.
        let first_held = released.iter().position(|gone| !gone).expect("one core is still held");
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let beside_released = live
            .as_ref()
            .is_some_and(|l| self.slots[relative].iter().any(|&i| live::live_name(&self.files[i].name) == l.name));
        if beside_released {
            if let Some(old) = live.take().filter(|l| l.writable) {
                let _ = old.file.set_len(0);
            }
            let name = self.slots[first_held].first().map(|&i| live::live_name(&self.files[i].name));
            *live = match (&self.folder, name) {
                (Some((dir, path)), Some(name)) => match crate::registry::open_slot_at(dir, path, &name) {
                    Ok(slot) => Some(slot),
                    Err(error) => {
                        tracing::warn!(%error, "cannot move the live publication; top and monitor lose this process");
                        None
                    }
                },
                _ => None,
            };
        }
        drop(live);
        let record = OwnerRecord::for_this_process(&self.device.to_string(), &self.held(&released));
        self.write_record(&record, &released);
        true
    }

    pub(crate) fn write_record(&self, record: &OwnerRecord, released: &[bool]) {
        let mut line = serde_json::to_vec(record).expect("an owner record always serializes");
        line.push(b'\n');
        let held = |i: usize| !self.slots.iter().zip(released).any(|(slots, gone)| *gone && slots.contains(&i));
        for slot in self.files.iter().enumerate().filter(|(i, s)| s.writable && held(*i)).map(|(_, s)| s) {
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
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let Some(slot) = live.as_ref().filter(|s| s.writable) else { return };
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
        let live = self.live.get_mut().unwrap_or_else(|p| p.into_inner());
        for slot in self.files.iter().chain(live.iter()).filter(|s| s.writable) {
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
    let folder = registry.folder();
    let lease = Lease::new(device, cores, groups, files, live, folder);
    lease.write_record(&record, &vec![false; lease.len()]);
    lease
}
