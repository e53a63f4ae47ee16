//! The host-wide ownership registry: one folder of lock files per device, one advisory
//! `flock` per slot, so the kernel releases a dead process's cores with no daemon.
//!
//! # Layout and permissions
//!
//! `<lock dir>/<device key>/` holds `nc<i>.lock` (sim) or `cpu<n>.lock` (cpu) per slot and
//! `alloc.lock`. Folders corral creates get mode 1777 (like `/tmp`) and lock files 0666, so
//! every user's processes share one registry. Every path below the lock dir is opened
//! relative to an already-open folder with `O_NOFOLLOW`, so a symlink planted by someone else
//! is refused, never followed, and no path is re-resolved between check and use.
//!
//! # Acquisition protocol
//!
//! 1. Check the request against the device (nothing is taken on a bad request), then fit it
//!    to the process's limits: the default takes the cores inside its affinity, and the
//!    default and a count take no more cores than its CPU quota feeds (a warning says so;
//!    an explicit set past the quota is taken, with a warning).
//! 2. Take `alloc.lock` exclusively, waiting at most [`ALLOC_WAIT_MAX`]. Allocators are thus
//!    serialised, so a core one allocator fails to lock is held by a settled lease, never by
//!    another allocator's half-built attempt: no request fails while a long enough free run
//!    exists. Releases need no lock and can happen at any time; they only free cores.
//! 3. For each candidate (the requested cores, or every run from low to high for a count,
//!    skipping cores outside this process's affinity), `try_lock` its slots in ascending
//!    order; on the first busy slot drop every lock taken so far (rollback) and move the
//!    start past the busy core.
//! 4. Write an owner record (pid, process start time, command, time) into each locked file,
//!    then drop `alloc.lock`.
//!
//! No step blocks on a core lock, so allocation cannot deadlock; a process that dies at any
//! step loses its locks to the kernel, so nothing leaks. Readers ([`Registry::status`]) take
//! no lock at all: they trust `/proc/locks` for "held" and a live record for "by whom".

use std::{
    fs::{File, TryLockError},
    io,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    fcntl::{OFlag, openat},
    sys::stat::{FileStat, Mode},
};

pub use crate::folder::LOCK_DIR_ENV;
use crate::{
    cgroup::format_cpus,
    core_set::{CoreRange, CoreSet},
    device::Device,
    folder::{ALLOC_LOCK, RegistryError, SlotFile, check_regular, ensure_dir, open_dir, open_slot_at, slot_error},
    lease::Lease,
    live::{self, Publication, Unreadable},
    procfs,
    record::{Owner, OwnerRecord},
    request::{CoreRequest, Request, RequestError},
};

/// The longest an allocator waits for another allocator to finish (step 2 above).
pub const ALLOC_WAIT_MAX: Duration = Duration::from_secs(10);

/// The lock directory every process on the host agrees on: `CORRAL_LOCK_DIR` if set, else
/// `/run/lock/corral` where `/run/lock` exists (Debian, Ubuntu, Fedora), else `/tmp/corral`.
pub fn default_lock_dir(lookup: impl Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(dir) = lookup(LOCK_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if Path::new("/run/lock").is_dir() { PathBuf::from("/run/lock/corral") } else { PathBuf::from("/tmp/corral") }
}

/// The error of a request that could not be granted.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{}", busy_message(.asked, .device, .longest_free, .holders, .hint))]
    Busy {
        /// `4 consecutive cores (CORRAL_NUM_CORES=4)`.
        asked: String,
        device: String,
        longest_free: Option<CoreRange>,
        /// Held cores that stood in the way, grouped into runs with one owner.
        holders: Vec<(CoreRange, Option<Owner>)>,
        hint: &'static str,
    },
    #[error(
        "another corral process kept {} locked for {} s while allocating\nhint: it may be stuck; `corral ls` shows who holds cores",
        path.display(),
        ALLOC_WAIT_MAX.as_secs()
    )]
    AllocTimeout { path: PathBuf },
    #[error("{0}")]
    Inherited(String),
}

fn busy_message(
    asked: &str,
    device: &str,
    longest_free: &Option<CoreRange>,
    holders: &[(CoreRange, Option<Owner>)],
    hint: &str,
) -> String {
    let mut message = format!("requested {asked} on {device}; ");
    match longest_free {
        Some(run) => message += &format!("longest free run is {run} ({})", run.count),
        None => message += "no core is free",
    }
    for (run, owner) in holders {
        match owner {
            Some(owner) => message += &format!("; {run} held by {owner}"),
            None => message += &format!("; {run} held by a process corral cannot identify"),
        }
    }
    message + "\nhint: " + hint
}

/// One core as a reader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreStatus {
    pub index: usize,
    pub cpus: Vec<usize>,
    /// Empty when free; several when `cpu:logical` processes hold different SMT siblings.
    pub owners: Vec<Owner>,
    /// True when a slot is held but its holder cannot be identified.
    pub held_unknown: bool,
}

impl CoreStatus {
    pub fn is_free(&self) -> bool {
        self.owners.is_empty() && !self.held_unknown
    }
}

/// A publication found beside a held core.
#[derive(Clone, Debug)]
pub struct LiveEntry {
    /// The core whose lock file it sits beside (the first of its publisher's lease).
    pub core: usize,
    /// The core's holder, who published it (for an unreadable file: who holds the core).
    pub owner: Owner,
    pub publication: Result<Publication, Unreadable>,
}

/// The registry of one device on this host.
#[derive(Debug)]
pub struct Registry {
    device: Device,
    dir: OwnedFd,
    path: PathBuf,
}

impl Registry {
    /// Opens (creating if needed) the registry folder of `device` under `lock_dir`.
    pub fn open(device: Device, lock_dir: &Path) -> Result<Registry, RegistryError> {
        let folder_error = |source: io::Error| RegistryError::Folder { path: lock_dir.to_owned(), error: source };
        if let Some(parent) = lock_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(folder_error)?;
        }
        let parent_dir = match lock_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => open_dir(None, parent)?,
            None => open_dir(None, Path::new("."))?,
        };
        let base_name = lock_dir.file_name().map(Path::new).unwrap_or(lock_dir);
        let base = ensure_dir(&parent_dir, base_name, lock_dir)?;
        let key = device.spec().registry_key();
        let path = lock_dir.join(&key);
        let dir = ensure_dir(&base, Path::new(&key), &path)?;
        Ok(Registry { device, dir, path })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The folder holding this device's lock files.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the cores `request` asks for, all or nothing (see the module docs).
    pub fn acquire(&self, request: &Request) -> Result<Lease, AcquireError> {
        let device_name = self.device.spec().to_string();
        let device_len = self.device.len();
        request.check(&device_name, device_len)?;
        let by_default = matches!(request.cores, CoreRequest::All) && request.groups.is_none();
        let request = &self.within_limits(request);
        let wanted = request.core_count(device_len);

        let alloc = self.lock_allocation()?;
        let taken = match &request.cores {
            CoreRequest::Visible(set) => self.try_set(set).map(|files| (set.clone(), files)),
            CoreRequest::All if request.groups.is_none() => {
                let all = CoreSet::from(CoreRange::new(0, device_len));
                self.try_set(&all).map(|files| (all, files))
            }
            CoreRequest::Num(_) | CoreRequest::All => self.first_free_run(wanted),
            CoreRequest::AnyOf(count) => match self.first_free_run(*count) {
                Err(Ok(_)) => self.lowest_free(*count),
                taken => taken,
            },
        };
        let lease = taken.map(|(cores, files)| {
            let lease = lease_with_record(self, cores, request.groups.as_deref(), files);
            if by_default { lease.taken_by_default() } else { lease }
        });
        drop(alloc);
        match lease {
            Ok(lease) => {
                tracing::debug!(device = %device_name, cores = %lease.cores(), "acquired");
                Ok(lease)
            }
            Err(Ok(_busy_core)) => Err(self.busy_error(request, wanted)),
            Err(Err(error)) => Err(error.into()),
        }
    }

    /// Fits `request` to the process's limits (SPEC §2): a CPU quota caps the default and a
    /// core count at [`Device::quota_cores`], and warns when an explicit set goes past it;
    /// otherwise the default takes the cores inside the affinity. Called once per acquisition,
    /// so each warning is said once.
    fn within_limits(&self, request: &Request) -> Request {
        let (Some(quota), Some(cap)) = (self.device.quota(), self.device.quota_cores()) else {
            return self.within_affinity(request);
        };
        let per_core = match self.device.cpus_per_core() {
            1 => String::new(),
            n => format!(" ({n} CPUs each)"),
        };
        match (&request.cores, &request.groups) {
            (CoreRequest::All, None) => {
                let count = self.device.takeable().map_or(0, |set| set.len());
                if cap >= count {
                    return self.within_affinity(request);
                }
                tracing::warn!(
                    "the CPU quota is {quota}: taking {} by default, not all {count}",
                    cores(cap, &per_core)
                );
                Request {
                    cores: CoreRequest::AnyOf(cap),
                    groups: None,
                    origin: format!(
                        "default ({}, as the CPU quota of {} CPUs allows)",
                        cores(cap, ""),
                        format_cpus(quota.cpus())
                    ),
                }
            }
            (CoreRequest::Num(count), _) if cap < *count => {
                tracing::warn!("the CPU quota is {quota}: {} is capped to {}", request.origin, cores(cap, &per_core));
                Request {
                    cores: CoreRequest::Num(cap),
                    groups: request.groups.clone(),
                    origin: format!("{}, capped to {cap} by the CPU quota", request.origin),
                }
            }
            _ => {
                let count = request.core_count(self.device.len());
                if cap < count {
                    tracing::warn!(
                        "the CPU quota is {quota}, enough for {}: {} takes {count}, so the kernel will throttle it",
                        cores(cap, &per_core),
                        request.origin
                    );
                }
                self.within_affinity(request)
            }
        }
    }

    /// The default request of a process whose affinity leaves cores out takes the cores
    /// inside it, as if `VISIBLE_CORES` named them (SPEC §2).
    fn within_affinity(&self, request: &Request) -> Request {
        match (&request.cores, &request.groups, self.device.takeable()) {
            (CoreRequest::All, None, Some(takeable)) if self.device.is_narrowed() => Request {
                origin: format!("default (the cores of this process's CPU affinity, {})", takeable.to_env_value()),
                cores: CoreRequest::Visible(takeable),
                groups: None,
            },
            _ => request.clone(),
        }
    }

    /// Scans starts from low to high for `count` consecutive free cores that this process
    /// may take; `Err(Ok(_))` when no start works.
    fn first_free_run(&self, count: usize) -> Result<(CoreSet, Vec<SlotFile>), Result<usize, RegistryError>> {
        let mut start = 0;
        while start + count <= self.device.len() {
            if let Some(outside) = (start..start + count).rev().find(|&core| !self.device.may_take(core)) {
                start = outside + 1;
                continue;
            }
            let run = CoreSet::from(CoreRange::new(start, count));
            match self.try_set(&run) {
                Ok(files) => return Ok((run, files)),
                Err(Ok(busy_core)) => start = busy_core + 1,
                Err(Err(error)) => return Err(Err(error)),
            }
        }
        Err(Ok(self.device.len()))
    }

    /// The `count` lowest free cores this process may take, consecutive or not; `Err(Ok(_))`
    /// when fewer are free.
    fn lowest_free(&self, count: usize) -> Result<(CoreSet, Vec<SlotFile>), Result<usize, RegistryError>> {
        let (mut cores, mut files) = (Vec::new(), Vec::new());
        for core in (0..self.device.len()).filter(|&core| self.device.may_take(core)) {
            if cores.len() == count {
                break;
            }
            match self.try_set(&CoreSet::from(CoreRange::new(core, 1))) {
                Ok(taken) => {
                    cores.push(core);
                    files.extend(taken);
                }
                Err(Ok(_busy)) => {}
                Err(Err(error)) => return Err(Err(error)),
            }
        }
        match CoreSet::from_indices(cores.iter().copied()) {
            Some(set) if cores.len() == count => Ok((set, files)),
            _ => Err(Ok(self.device.len())),
        }
    }

    /// Locks every slot of `cores` in ascending order; on the first busy core drops what it
    /// took and returns `Err(Ok(busy core))`.
    fn try_set(&self, cores: &CoreSet) -> Result<Vec<SlotFile>, Result<usize, RegistryError>> {
        let mut files = Vec::new();
        for core in cores.iter() {
            for name in self.device.slot_names(core) {
                let slot = self.open_slot(&name).map_err(Err)?;
                match slot.file.try_lock() {
                    Ok(()) => files.push(slot),
                    Err(TryLockError::WouldBlock) => return Err(Ok(core)),
                    Err(TryLockError::Error(source)) => {
                        return Err(Err(RegistryError::Slot { path: self.path.join(&name), error: source }));
                    }
                }
            }
        }
        Ok(files)
    }

    /// Takes `alloc.lock`, polling with a growing pause up to [`ALLOC_WAIT_MAX`].
    fn lock_allocation(&self) -> Result<File, AcquireError> {
        let slot = self.open_slot(ALLOC_LOCK)?;
        let deadline = Instant::now() + ALLOC_WAIT_MAX;
        let mut pause = Duration::from_micros(20);
        loop {
            match slot.file.try_lock() {
                Ok(()) => return Ok(slot.file),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(AcquireError::AllocTimeout { path: self.path.join(ALLOC_LOCK) });
                }
                Err(TryLockError::Error(source)) => {
                    return Err(RegistryError::Slot { path: self.path.join(ALLOC_LOCK), error: source }.into());
                }
            }
        }
    }

    fn busy_error(&self, request: &Request, wanted: usize) -> AcquireError {
        let status = self.status().unwrap_or_default();
        let (asked, hint) = match &request.cores {
            CoreRequest::Visible(set) => {
                (format!("{set} ({})", request.origin), "pick other cores, or stop the process that holds them")
            }
            _ if self.device.is_narrowed() => (
                format!(
                    "{wanted} consecutive cores ({}) inside this process's CPU affinity ({})",
                    request.origin,
                    self.device.takeable().map(|set| set.to_string()).unwrap_or_default()
                ),
                "wait for those processes to end or stop them, ask for fewer cores, or widen the affinity (taskset, cpuset)",
            ),
            _ => (
                format!("{wanted} consecutive cores ({})", request.origin),
                "wait for those processes to end or stop them, or ask for fewer cores",
            ),
        };
        let in_the_way = |core: usize| match &request.cores {
            CoreRequest::Visible(set) => set.contains(core),
            _ => true,
        };
        AcquireError::Busy {
            asked,
            device: self.device.spec().to_string(),
            longest_free: longest_free_run(&status),
            holders: holder_runs(status.iter().filter(|c| in_the_way(c.index))),
            hint,
        }
    }

    /// Who holds each core, read without taking any lock.
    pub fn status(&self) -> Result<Vec<CoreStatus>, RegistryError> {
        let holders = procfs::flock_holders();
        let mut rereads = procfs::Rereads::default();
        let mut cores = Vec::with_capacity(self.device.len());
        for index in 0..self.device.len() {
            let mut status =
                CoreStatus { index, cpus: self.device.cpus(index).to_vec(), owners: Vec::new(), held_unknown: false };
            for name in self.device.slot_names(index) {
                let Some((file, stat)) = self.open_existing(&name)? else { continue };
                let (record, unreadable) = match OwnerRecord::read(&file) {
                    Ok(record) => (record, false),
                    Err(_) => (None, true),
                };
                let written = record.is_some() || unreadable;
                let record = record.filter(OwnerRecord::is_alive);
                let key = procfs::FileKey::of(&stat);
                let mut holder = holders.as_ref().map(|h| h.get(&key).copied());
                if holder == Some(None) && written {
                    // `/proc/locks` is produced in page-sized passes and can skip an entry
                    // while other locks come and go; a file with anything written in it (a
                    // holder's record, however stale or garbled) earns a second look. Released
                    // files are emptied, so free cores cost no extra reads.
                    holder = Some(rereads.holder(key));
                }
                let owner = match (holder, record) {
                    // Without /proc/locks, a live record is all there is to go by.
                    (None, record) => record.map(|r| r.into_owner(index)),
                    (Some(None), _) => None,
                    (Some(Some(_)), Some(record)) => Some(record.into_owner(index)),
                    (Some(Some(0)), None) => {
                        status.held_unknown = true;
                        None
                    }
                    (Some(Some(pid)), None) => Some(Owner {
                        pid,
                        command: {
                            let command = procfs::command_line(pid).unwrap_or_else(|| "?".to_owned());
                            if unreadable { format!("{command} (unreadable record)") } else { command }
                        },
                        since: None,
                        models: Vec::new(),
                        instances: Vec::new(),
                        engines: Default::default(),
                    }),
                };
                if let Some(owner) = owner
                    && !status.owners.iter().any(|o| o.pid == owner.pid)
                {
                    status.owners.push(owner);
                }
            }
            cores.push(status);
        }
        Ok(cores)
    }

    /// The live publications beside the held cores of `status` (see `live.rs`), each checked
    /// against its core's holder: a publication by anyone but that live process is ignored,
    /// and one that cannot be read is returned as [`Unreadable`], never trusted.
    pub fn live(&self, status: &[CoreStatus]) -> Vec<LiveEntry> {
        let mut entries = Vec::new();
        for core in status.iter().filter(|c| !c.owners.is_empty()) {
            let Some(first_slot) = self.device.slot_names(core.index).into_iter().next() else { continue };
            let Ok(Some((file, _))) = self.open_existing(&live::live_name(&first_slot)) else { continue };
            let publication = match live::read(&file) {
                Ok(None) => continue,
                Ok(Some(publication)) => publication,
                Err(why) => {
                    let owner = &core.owners[0];
                    entries.push(LiveEntry { core: core.index, owner: owner.clone(), publication: Err(why) });
                    continue;
                }
            };
            let by_holder = core.owners.iter().find(|o| o.pid == publication.pid);
            match by_holder {
                Some(owner) if procfs::start_ticks(owner.pid) == Some(publication.start_ticks) => {
                    entries.push(LiveEntry { core: core.index, owner: owner.clone(), publication: Ok(publication) });
                }
                // A former holder's, or someone's forgery: nothing to trust.
                _ => {}
            }
        }
        entries
    }

    /// Opens (creating if needed) a slot's lock file without following links.
    pub(crate) fn open_slot(&self, name: &str) -> Result<SlotFile, RegistryError> {
        open_slot_at(&self.dir, &self.path, name)
    }

    /// A second descriptor of the registry folder and its path, for a lease that opens a slot
    /// after its acquisition (`Lease::release` moving the live publication).
    pub(crate) fn folder(&self) -> Option<(OwnedFd, PathBuf)> {
        self.dir.try_clone().ok().map(|dir| (dir, self.path.clone()))
    }

    /// The registry a lease's folder descriptor stands for (`Lease::registry`).
    pub(crate) fn from_folder(device: Device, dir: OwnedFd, path: PathBuf) -> Registry {
        Registry { device, dir, path }
    }

    /// Opens an existing slot read-only, for readers; `None` if it was never created.
    pub(crate) fn open_existing(&self, name: &str) -> Result<Option<(File, FileStat)>, RegistryError> {
        let flags = OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_RDONLY;
        match openat(&self.dir, name, flags, Mode::empty()) {
            Ok(fd) => {
                let stat = check_regular(&fd, &self.path.join(name))?;
                Ok(Some((File::from(fd), stat)))
            }
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(slot_error(self.path.join(name), errno)),
        }
    }
}

/// `1 core`, `2 cores`, `1 core (2 CPUs each)`.
fn cores(count: usize, per_core: &str) -> String {
    let noun = if count == 1 { "core" } else { "cores" };
    format!("{count} {noun}{per_core}")
}

/// The longest run of free cores, lowest first among equals.
pub fn longest_free_run(status: &[CoreStatus]) -> Option<CoreRange> {
    let mut best: Option<CoreRange> = None;
    let mut start = None;
    for core in status.iter().map(Some).chain([None]) {
        match (core, start) {
            (Some(c), None) if c.is_free() => start = Some(c.index),
            (Some(c), Some(_)) if c.is_free() => {}
            (end, Some(first)) => {
                let end_index = end.map_or(status.len(), |c| c.index);
                let run = CoreRange::new(first, end_index - first);
                if best.is_none_or(|b| run.count > b.count) {
                    best = Some(run);
                }
                start = None;
            }
            _ => {}
        }
    }
    best
}

/// Groups held cores into runs of consecutive cores with the same (first) owner.
fn holder_runs<'a>(cores: impl Iterator<Item = &'a CoreStatus>) -> Vec<(CoreRange, Option<Owner>)> {
    let mut runs: Vec<(CoreRange, Option<Owner>)> = Vec::new();
    for core in cores.filter(|c| !c.is_free()) {
        let owner = core.owners.first().cloned();
        match runs.last_mut() {
            Some((run, last))
                if run.end() == core.index && last.as_ref().map(|o| o.pid) == owner.as_ref().map(|o| o.pid) =>
            {
                run.count += 1
            }
            _ => runs.push((CoreRange::new(core.index, 1), owner)),
        }
    }
    runs
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
    lease.record_owner(&record);
    lease
}
