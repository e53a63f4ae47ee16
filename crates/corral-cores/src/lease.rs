//! A lease: the cores a process owns, as open and `flock`ed lock files.
//!
//! Dropping a [`Lease`] (or dying) releases it. Before its files close, `Drop` truncates the
//! owner records it wrote, so a reader never sees a stale record for a free core (and would
//! ignore one anyway: a record only counts while its lock is held by a live process).
//! [`Lease::release`] gives one core back early (it left the process's cpuset): its records
//! are cut and its locks dropped, its files stay open (their descriptors are the fork
//! handler's), and the process keeps numbering its other cores as before. [`Lease::join`]
//! takes one more core of the device later (it joined the process's cpuset), numbered after
//! the others, or a released one back under its old number.
//! Handing a lease to a child and adopting it there is `inherit.rs`; the live counters a
//! lease publishes beside its first lock file are `live.rs`.

use std::{
    os::{
        fd::{AsRawFd, OwnedFd, RawFd},
        unix::fs::FileExt,
    },
    path::PathBuf,
    sync::{Mutex, MutexGuard},
};

use crate::sync;
use crate::{
    core_set::{CoreRange, CoreSet},
    device::{Device, DeviceSpec},
    folder::{self, ALLOC_LOCK, RegistryError, SlotFile},
    live::{self, Publication},
    procfs,
    record::{OwnerRecord, now_unix_ms},
};

/// Cores owned by this process until the lease is dropped or the process dies.
#[must_use = "dropping a lease releases its cores at once"]
#[derive(Debug)]
pub struct Lease {
    /// The device as resolved when the lease was taken (to [`Lease::join`] more of its cores).
    host: Device,
    /// Legacy groups, process-relative; empty when none were asked for.
    groups: Vec<CoreRange>,
    /// Per process core, in process order: the ones taken at the start (ascending global
    /// order), then the ones [`Lease::join`] added.
    cores: Mutex<Vec<LeasedCore>>,
    /// Open lock files that stand for no single core (kept, and so held, for the lease's life).
    other: Vec<SlotFile>,
    /// The publication file beside the first held core's first slot; `None` when it cannot be
    /// opened for writing.
    live: Mutex<Option<SlotFile>>,
    /// The registry folder (a descriptor and its path), to open a publication file beside
    /// another core when the first is released, and to join cores.
    folder: Option<(OwnedFd, PathBuf)>,
    /// Taken by the default request (no core count, list or groups; not inherited): the
    /// process then follows its cpuset and quota both ways (SPEC §2).
    by_default: bool,
}

/// One process core of a lease.
#[derive(Debug)]
struct LeasedCore {
    global: usize,
    /// Its host CPUs; empty on `sim`.
    cpus: Vec<usize>,
    files: Vec<SlotFile>,
    /// Given back by [`Lease::release`] (its files stay open, unlocked).
    released: bool,
}

/// Why [`Lease::join`] took no core.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("nc{0} is not a core of this device")]
    NoSuchCore(usize),
    #[error("nc{0} is held by another process")]
    Busy(usize),
    #[error("the registry is busy allocating for another process")]
    Allocating,
    #[error("this lease has no registry folder to take cores from")]
    NoFolder,
    #[error(transparent)]
    Registry(#[from] RegistryError),
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
        let mut files: Vec<Option<SlotFile>> = files.into_iter().map(Some).collect();
        let leased = cores
            .iter()
            .map(|core| {
                let names = device.slot_names(core);
                LeasedCore {
                    global: core,
                    cpus: device.cpus(core).to_vec(),
                    files: files
                        .iter_mut()
                        .filter(|f| f.as_ref().is_some_and(|f| names.contains(&f.name)))
                        .filter_map(Option::take)
                        .collect(),
                    released: false,
                }
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
            host: device.clone(),
            groups,
            cores: Mutex::new(leased),
            other: files.into_iter().flatten().collect(),
            live: Mutex::new(live),
            folder,
            by_default: false,
        }
    }

    /// Marks the lease as taken by the default request.
    pub(crate) fn taken_by_default(mut self) -> Lease {
        self.by_default = true;
        self
    }

    /// Writes `record` as the owner of every held core.
    pub(crate) fn record_owner(&self, record: &OwnerRecord) {
        write_record(&self.state(), record);
    }

    /// Whether the default request took it (see `by_default`).
    pub fn is_by_default(&self) -> bool {
        self.by_default
    }

    pub fn device(&self) -> &DeviceSpec {
        self.host.spec()
    }

    /// The device as it was resolved when the lease was taken.
    pub fn host_device(&self) -> &Device {
        &self.host
    }

    /// The registry this lease was taken from, to read every holder of the device (a server's
    /// dashboard); `None` for a lease without a registry folder.
    pub fn registry(&self) -> Option<crate::Registry> {
        let (dir, path) = self.folder.as_ref()?;
        Some(crate::Registry::from_folder(self.host.clone(), dir.try_clone().ok()?, path.clone()))
    }

    fn state(&self) -> MutexGuard<'_, Vec<LeasedCore>> {
        sync::lock(&self.cores)
    }

    /// The leased cores, by global (device) index, released ones included; consecutive or not.
    pub fn cores(&self) -> CoreSet {
        let state = self.state();
        CoreSet::from_indices(state.iter().map(|c| c.global)).expect("a lease holds at least one core")
    }

    /// Number of process cores (released ones included); processes number them `0..len()`:
    /// the cores taken at the start in ascending global order, then joined ones as they came.
    pub fn len(&self) -> usize {
        self.state().len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The global (device) index of each process core, in process order.
    pub fn globals(&self) -> Vec<usize> {
        self.state().iter().map(|c| c.global).collect()
    }

    /// The global (device) index of process core `relative`.
    pub fn global(&self, relative: usize) -> usize {
        self.state()[relative].global
    }

    /// The host CPUs behind process core `relative` (empty on `sim`).
    pub fn core_cpus(&self, relative: usize) -> Vec<usize> {
        self.state()[relative].cpus.clone()
    }

    /// Every host CPU behind the lease, ascending (empty on `sim`).
    pub fn cpus(&self) -> Vec<usize> {
        let mut cpus: Vec<usize> = self.state().iter().flat_map(|c| c.cpus.iter().copied()).collect();
        cpus.sort_unstable();
        cpus
    }

    /// Legacy NeuronCore groups (process-relative), in order; empty when none were asked for.
    pub fn groups(&self) -> &[CoreRange] {
        &self.groups
    }

    /// Names another process as the owner in the records (a launcher naming its child).
    pub fn set_owner(&self, pid: u32, command: &str) {
        let state = self.state();
        let record = OwnerRecord {
            pid,
            start_ticks: procfs::start_ticks(pid).unwrap_or(0),
            command: procfs::shorten(command),
            since_unix_ms: now_unix_ms(),
            device: self.device().to_string(),
            cores: held(&state).to_env_value(),
            models: Vec::new(),
            engines: Default::default(),
        };
        write_record(&state, &record);
    }

    /// Publishes which instances sit on each core (by process-relative index, labelled
    /// `name[replica]`) and each model's engine in the owner records, so `corral ls` can show
    /// them next to the owner.
    pub fn publish_models(
        &self,
        per_core: &[Vec<String>],
        engines: &std::collections::BTreeMap<String, crate::ModelEngine>,
    ) {
        let state = self.state();
        let mut record = OwnerRecord::for_this_process(&self.device().to_string(), &held(&state));
        // The record numbers the cores it lists: the held ones, in ascending global order.
        let mut listed: Vec<(usize, Vec<String>)> = state
            .iter()
            .enumerate()
            .filter(|(_, core)| !core.released)
            .map(|(i, core)| (core.global, per_core.get(i).cloned().unwrap_or_default()))
            .collect();
        listed.sort_by_key(|(global, _)| *global);
        record.models = listed.into_iter().map(|(_, models)| models).collect();
        record.engines = engines.clone();
        write_record(&state, &record);
    }

    /// Whether process core `relative` is still held (not given back by [`Lease::release`]).
    pub fn is_held(&self, relative: usize) -> bool {
        self.state().get(relative).is_some_and(|core| !core.released)
    }

    /// Gives process core `relative` back to the registry before the lease ends (it left the
    /// process's cpuset, or its quota): its records are cut and its locks released, the
    /// others' records rewritten without it. False when it was released already or is the
    /// last one held.
    pub fn release(&self, relative: usize) -> bool {
        let mut state = self.state();
        if state.get(relative).is_none_or(|core| core.released) || state.iter().filter(|c| !c.released).count() == 1 {
            return false;
        }
        state[relative].released = true;
        for slot in &state[relative].files {
            if slot.writable {
                let _ = slot.file.set_len(0);
            }
            if let Err(error) = slot.file.unlock() {
                tracing::warn!(slot = %slot.name, %error, "cannot release the core's lock");
            }
        }
        self.follow_live(&state);
        let record = OwnerRecord::for_this_process(&self.device().to_string(), &held(&state));
        write_record(&state, &record);
        true
    }

    /// Takes global core `global` of the device into the lease (it joined the process's
    /// cpuset, or the quota grew), as `acquire` would: under the registry's allocation lock,
    /// every slot of the core or none. A core this lease gave back keeps its process index;
    /// a new one gets the next. Returns the process index.
    pub fn join(&self, global: usize) -> Result<usize, JoinError> {
        if global >= self.host.len() {
            return Err(JoinError::NoSuchCore(global));
        }
        let (dir, path) = self.folder.as_ref().ok_or(JoinError::NoFolder)?;
        let alloc = folder::open_slot_at(dir, path, ALLOC_LOCK)?;
        match alloc.file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(JoinError::Allocating),
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(RegistryError::Slot { path: path.join(&alloc.name), error }.into());
            }
        }
        let mut state = self.state();
        let known = state.iter().position(|c| c.global == global);
        if let Some(relative) = known.filter(|&i| !state[i].released) {
            return Ok(relative);
        }
        let files = match known {
            Some(relative) => std::mem::take(&mut state[relative].files),
            None => self
                .host
                .slot_names(global)
                .iter()
                .map(|name| folder::open_slot_at(dir, path, name))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let mut locked = 0;
        for slot in &files {
            match slot.file.try_lock() {
                Ok(()) => locked += 1,
                Err(_) => break,
            }
        }
        if locked < files.len() {
            files.iter().take(locked).for_each(|slot| {
                let _ = slot.file.unlock();
            });
            if let Some(relative) = known {
                state[relative].files = files;
            }
            return Err(JoinError::Busy(global));
        }
        let relative = match known {
            Some(relative) => {
                state[relative].files = files;
                state[relative].released = false;
                relative
            }
            None => {
                state.push(LeasedCore { global, cpus: self.host.cpus(global).to_vec(), files, released: false });
                state.len() - 1
            }
        };
        let record = OwnerRecord::for_this_process(&self.device().to_string(), &held(&state));
        write_record(&state, &record);
        drop(alloc);
        Ok(relative)
    }

    /// Moves the live publication beside the first held core when the one it sat beside was
    /// released.
    fn follow_live(&self, state: &[LeasedCore]) {
        let mut live = sync::lock(&self.live);
        let beside_released = live.as_ref().is_some_and(|l| {
            state.iter().filter(|c| c.released).any(|c| c.files.iter().any(|f| live::live_name(&f.name) == l.name))
        });
        if !beside_released {
            return;
        }
        if let Some(old) = live.take().filter(|l| l.writable) {
            let _ = old.file.set_len(0);
        }
        let first_held = state.iter().find(|c| !c.released).expect("one core is still held");
        let name = first_held.files.first().map(|f| live::live_name(&f.name));
        *live = match (&self.folder, name) {
            (Some((dir, path)), Some(name)) => match folder::open_slot_at(dir, path, &name) {
                Ok(slot) => Some(slot),
                Err(error) => {
                    tracing::warn!(%error, "cannot move the live publication; top and monitor lose this process");
                    None
                }
            },
            _ => None,
        };
    }

    /// Rewrites this lease's live publication (see `live.rs`); a no-op when its file could
    /// not be opened for writing. Not for the hot path: the caller publishes on a timer.
    pub fn publish_live(&self, publication: &Publication) {
        let live = sync::lock(&self.live);
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
        self.slot_fds().into_iter().map(|(_, fd)| fd).collect()
    }

    /// Each open lock file's slot name and descriptor.
    pub(crate) fn slot_fds(&self) -> Vec<(String, RawFd)> {
        let state = self.state();
        let files = state.iter().flat_map(|c| c.files.iter()).chain(&self.other);
        files.map(|s| (s.name.clone(), s.file.as_raw_fd())).collect()
    }
}

/// The cores still held (global indices).
fn held(state: &[LeasedCore]) -> CoreSet {
    CoreSet::from_indices(state.iter().filter(|c| !c.released).map(|c| c.global))
        .expect("a lease always holds at least one core")
}

/// Writes `record` into every writable slot of the held cores.
fn write_record(state: &[LeasedCore], record: &OwnerRecord) {
    let mut line = serde_json::to_vec(record).expect("an owner record always serializes");
    line.push(b'\n');
    for slot in state.iter().filter(|c| !c.released).flat_map(|c| c.files.iter()).filter(|s| s.writable) {
        // Write first, then cut: a reader never sees an empty file while the core is held,
        // and stops at the first newline, so a longer old record's tail is never read.
        let written = slot.file.write_all_at(&line, 0).and_then(|()| slot.file.set_len(line.len() as u64));
        if let Err(error) = written {
            tracing::warn!(slot = %slot.name, %error, "cannot write the owner record");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let live = sync::mutex_mut(&mut self.live);
        let cores = sync::mutex_mut(&mut self.cores);
        let held = cores.iter().filter(|c| !c.released).flat_map(|c| c.files.iter());
        for slot in held.chain(self.other.iter()).chain(live.iter()).filter(|s| s.writable) {
            let _ = slot.file.set_len(0);
        }
        // Closing the files (next) releases the locks.
    }
}
