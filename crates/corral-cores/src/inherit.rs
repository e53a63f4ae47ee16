//! Handing a lease to a child process, and adopting it there.
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
    os::{
        fd::{BorrowedFd, FromRawFd, RawFd},
        unix::process::CommandExt,
    },
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};

use crate::{
    core_set::{CoreRange, CoreSet, parse_core_list},
    folder::SlotFile,
    lease::Lease,
    registry::{AcquireError, Registry, lease_with_record},
    request::{CoreRequest, Request},
};

/// The environment variable that carries a lease ticket to a child process.
pub const LEASE_ENV: &str = "CORRAL_LEASE";

/// Set once this process has adopted an inherited lease.
static ADOPTED: AtomicBool = AtomicBool::new(false);

impl Lease {
    /// Prepares `command` to inherit this lease: the descriptors survive `exec` and
    /// `CORRAL_LEASE` names them (see the module docs).
    pub fn hand_down(&self, command: &mut Command) {
        let ticket =
            Ticket { device: self.device().to_string(), cores: self.cores().to_env_value(), slots: self.slot_fds() };
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
            // Not made for inherited leases (no quota cap there), but the lowest n would do.
            CoreRequest::AnyOf(n) => CoreSet::from_indices(leased.iter().take(*n)).filter(|s| s.len() == *n),
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
        Ok(lease_with_record(self, chosen, request.groups.as_deref(), files))
    }
}

/// The lowest run of `count` globally consecutive cores inside `set`.
fn first_run_within(set: &CoreSet, count: usize) -> Option<CoreRange> {
    set.runs().iter().find(|run| run.count >= count).map(|run| CoreRange::new(run.first, count))
}
