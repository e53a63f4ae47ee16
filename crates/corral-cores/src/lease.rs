//! A lease: the cores a process owns, as open and `flock`ed lock files.
//!
//! Dropping a [`Lease`] (or dying) releases it. Before its files close, `Drop` truncates the
//! owner records it wrote, so a reader never sees a stale record for a free core (and would
//! ignore one anyway: a record only counts while its lock is held by a live process).
//!
//! # Handing a lease to a child
//!
//! [`Lease::hand_down`] clears `FD_CLOEXEC` on the lease's descriptors in the child (between
//! fork and exec) and sets `CORRAL_LEASE` to a ticket naming the device, the cores and which
//! descriptor is which slot. A `flock` belongs to the open file description, which parent and
//! child now share: the cores stay held while either holds a descriptor, and the kernel
//! releases them when both are gone. A corral runtime started in the child finds the ticket
//! and calls [`Registry::adopt`] instead of competing for cores:
//!
//! 1. The ticket must name the device the child asked for.
//! 2. Each descriptor must be open and be the very file (device and inode) that the registry
//!    path of its slot names; otherwise the ticket is refused.
//! 3. `try_lock` on the inherited descriptor succeeds (same open file description); if it
//!    does not, someone else holds the core and the ticket is refused.
//! 4. The request must fit inside the ticket's cores; the child keeps what it asked for,
//!    rewrites the owner records with its own pid, and closes the other descriptors (the
//!    parent still holds them, so they are not released).
//!
//! A process adopts at most once ([`ADOPTED`]), so two `File`s never own one descriptor.

use std::{
    fs::File,
    io::Read,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, RawFd},
        unix::{fs::FileExt, process::CommandExt},
    },
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};

use crate::{
    core_set::{CoreRange, CoreSet, parse_core_list},
    device::{Device, DeviceSpec},
    procfs,
    registry::{AcquireError, Owner, Registry},
    request::{CoreRequest, Request},
};

/// The environment variable that carries a lease ticket to a child process.
pub const LEASE_ENV: &str = "CORRAL_LEASE";

/// Set once this process has adopted an inherited lease.
static ADOPTED: AtomicBool = AtomicBool::new(false);

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
    files: Vec<SlotFile>,
}

impl Lease {
    pub(crate) fn new(device: &Device, cores: CoreSet, groups: Option<&[usize]>, files: Vec<SlotFile>) -> Lease {
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

    /// Publishes which models sit on each core (by process-relative index) in the owner
    /// records, so `corral ls` can show them next to the owner.
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

    /// The descriptors whose `flock`s hold this lease. A forked child shares them (and so
    /// keeps the cores held after the parent ends) until it closes its copies; closing them
    /// in the child leaves the parent's locks in place.
    pub fn lock_fds(&self) -> Vec<RawFd> {
        self.files.iter().map(|s| s.file.as_raw_fd()).collect()
    }

    /// Prepares `command` to inherit this lease: the descriptors survive `exec` and
    /// `CORRAL_LEASE` names them (see the module docs).
    pub fn hand_down(&self, command: &mut Command) {
        let ticket = Ticket {
            device: self.device.to_string(),
            cores: self.cores.to_env_value(),
            slots: self.files.iter().map(|s| (s.name.clone(), s.file.as_raw_fd())).collect(),
        };
        command.env(LEASE_ENV, serde_json::to_string(&ticket).expect("a ticket always serializes"));
        let fds = self.lock_fds();
        // SAFETY: the closure runs in the forked child before exec and only calls fcntl, which
        // is async-signal-safe; it allocates nothing (`fds` was built before the fork).
        unsafe {
            command.pre_exec(move || {
                for &fd in &fds {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        for slot in self.files.iter().filter(|s| s.writable) {
            let _ = slot.file.set_len(0);
        }
        // Closing the files (next) releases the locks.
    }
}

/// What a holder writes into each lock file: one JSON line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct OwnerRecord {
    pub(crate) pid: u32,
    /// With `pid`, names one process for the life of the host (pids are reused).
    pub(crate) start_ticks: u64,
    pub(crate) command: String,
    pub(crate) since_unix_ms: u64,
    pub(crate) device: String,
    /// The whole lease, global indices (`2-3`, `1,3`).
    pub(crate) cores: String,
    /// Models per leased core (process-relative order), when the holder publishes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) models: Vec<Vec<String>>,
}

impl OwnerRecord {
    pub(crate) fn for_this_process(device: &str, cores: &CoreSet) -> OwnerRecord {
        let pid = std::process::id();
        OwnerRecord {
            pid,
            start_ticks: procfs::start_ticks(pid).unwrap_or(0),
            command: procfs::command_line(pid).unwrap_or_else(|| "?".to_owned()),
            since_unix_ms: now_unix_ms(),
            device: device.to_owned(),
            cores: cores.to_env_value(),
            models: Vec::new(),
        }
    }

    pub(crate) fn read(mut file: &File) -> Option<OwnerRecord> {
        const RECORD_BYTES_MAX: u64 = 4096;
        let mut text = String::new();
        file.by_ref().take(RECORD_BYTES_MAX).read_to_string(&mut text).ok()?;
        serde_json::from_str(text.lines().next()?).ok()
    }

    /// True while the recorded process is the one still running under that pid.
    pub(crate) fn is_alive(&self) -> bool {
        procfs::start_ticks(self.pid).is_some_and(|ticks| self.start_ticks == 0 || ticks == self.start_ticks)
    }

    /// The owner as seen from global core `index`.
    pub(crate) fn into_owner(self, index: usize) -> Owner {
        // The record is untrusted text: the list is parsed without expansion, then searched.
        let relative = parse_core_list(&self.cores).ok().and_then(|cores| cores.relative(index));
        let models = relative.and_then(|relative| self.models.get(relative)).cloned().unwrap_or_default();
        Owner {
            pid: self.pid,
            command: self.command,
            since: Some(UNIX_EPOCH + Duration::from_millis(self.since_unix_ms)),
            models,
        }
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The `CORRAL_LEASE` ticket.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ticket {
    pub device: String,
    /// Global indices in the list syntax (`2-3`, `1,3`).
    pub cores: String,
    /// Slot file name → inherited descriptor.
    pub slots: Vec<(String, RawFd)>,
}

impl Ticket {
    /// Reads a ticket from `CORRAL_LEASE` through `lookup`; `Ok(None)` when there is none.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Ticket>, AcquireError> {
        let Some(text) = lookup(LEASE_ENV) else { return Ok(None) };
        serde_json::from_str(&text).map(Some).map_err(|error| {
            AcquireError::Inherited(format!(
                "{LEASE_ENV}={text} is not a lease ticket: {error}\nhint: it is set by `corral launch`; unset it to take cores normally"
            ))
        })
    }

    /// The ticket's cores; an error names the ticket when they are not a core list.
    pub fn cores(&self) -> Result<CoreSet, AcquireError> {
        parse_core_list(&self.cores).map_err(|why| {
            AcquireError::Inherited(format!(
                "cannot adopt the lease in {LEASE_ENV}: its cores `{}` are not a core list ({why})\nhint: it is set by `corral launch`; unset it to take cores normally",
                self.cores
            ))
        })
    }
}

impl Registry {
    /// Adopts a lease handed down by a parent process, keeping the part `request` asks for
    /// (see the module docs for the steps).
    pub fn adopt(&self, ticket: &Ticket, request: &Request) -> Result<Lease, AcquireError> {
        let leased = ticket.cores()?;
        let refuse = |why: String| {
            AcquireError::Inherited(format!(
                "cannot adopt the lease in {LEASE_ENV} ({leased} on {}): {why}",
                ticket.device
            ))
        };
        let device_name = self.device().spec().to_string();
        if ticket.device != device_name {
            return Err(refuse(format!(
                "this process asks for device {device_name}\nhint: ask for {} or unset {LEASE_ENV}",
                ticket.device
            )));
        }
        if leased.last() >= self.device().len() {
            return Err(refuse(format!("{device_name} has only {} cores", self.device().len())));
        }
        // Cores are matched by identity: each index must stand for the very slots (host CPUs
        // on `cpu`) that the parent locked, which holds because every process numbers the
        // device the same way, whatever its affinity.
        let expected: Vec<(String, usize)> =
            leased.iter().flat_map(|i| self.device().slot_names(i).into_iter().map(move |name| (name, i))).collect();
        let names: Vec<&str> = ticket.slots.iter().map(|(name, _)| name.as_str()).collect();
        if !names.iter().eq(expected.iter().map(|(name, _)| name)) {
            return Err(refuse(format!("it names slots {names:?}, expected {expected:?}")));
        }
        let chosen = match &request.cores {
            CoreRequest::All => Some(leased.clone()),
            CoreRequest::Num(n) => first_run_within(&leased, *n).map(CoreSet::from),
            CoreRequest::Visible(set) => leased.contains_set(set).then(|| set.clone()),
        };
        let chosen = match chosen {
            Some(chosen) => chosen,
            None => {
                return Err(refuse(format!(
                    "{} asks for cores outside it\nhint: ask within {leased}, or unset {LEASE_ENV} to take cores normally",
                    request.origin
                )));
            }
        };
        request.check(&device_name, self.device().len())?;
        if let Some(groups) = &request.groups
            && groups.iter().sum::<usize>() > chosen.len()
        {
            return Err(refuse(format!("{}: the groups need more than {} cores", request.origin, chosen.len())));
        }
        for (name, fd) in &ticket.slots {
            // SAFETY: the borrow lives only for this `fstat`, which fails cleanly (EBADF) if the
            // descriptor is not open.
            let borrowed = unsafe { BorrowedFd::borrow_raw(*fd) };
            let inherited =
                nix::sys::stat::fstat(borrowed).map_err(|_| refuse(format!("descriptor {fd} is not open")))?;
            let same = self
                .open_existing(name)?
                .is_some_and(|(_, stat)| stat.st_dev == inherited.st_dev && stat.st_ino == inherited.st_ino);
            if !same {
                return Err(refuse(format!("descriptor {fd} is not {}", self.path().join(name).display())));
            }
        }
        if ADOPTED.swap(true, Ordering::SeqCst) {
            return Err(refuse("this process already adopted it".to_owned()));
        }
        let mut files = Vec::new();
        for ((name, fd), (_, core)) in ticket.slots.iter().zip(&expected) {
            // SAFETY: `fd` is open and is the registry's lock file (checked above), it came to
            // us through exec, and `ADOPTED` guarantees no other `File` in this process was
            // made from it.
            let file = unsafe { File::from_raw_fd(*fd) };
            if !chosen.contains(*core) {
                continue; // closing our copy keeps the parent's lock: the core stays held
            }
            if let Err(error) = file.try_lock() {
                return Err(refuse(format!("{name} is held by another process ({error})")));
            }
            let writable = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)
                .is_ok_and(|flags| OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE == OFlag::O_RDWR);
            files.push(SlotFile { file, name: name.clone(), writable });
        }
        Ok(lease_with_record(self.device(), chosen, request.groups.as_deref(), files))
    }
}

/// A new lease on `cores`, its owner record (this process) written into each slot.
pub(crate) fn lease_with_record(
    device: &Device,
    cores: CoreSet,
    groups: Option<&[usize]>,
    files: Vec<SlotFile>,
) -> Lease {
    let record = OwnerRecord::for_this_process(&device.spec().to_string(), &cores);
    let lease = Lease::new(device, cores, groups, files);
    lease.write_record(&record);
    lease
}

/// The lowest run of `count` globally consecutive cores inside `set`.
fn first_run_within(set: &CoreSet, count: usize) -> Option<CoreRange> {
    set.runs().iter().find(|run| run.count >= count).map(|run| CoreRange::new(run.first, count))
}
