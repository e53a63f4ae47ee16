//! The registry's folder on disk: lock files opened relative to an already-open folder with
//! `O_NOFOLLOW`, so a link planted by someone else is refused, never followed, and no path is
//! re-resolved between check and use; folders made shared (1777) and files lockable by every
//! user (0666). `registry.rs` says why; this is only the IO.

use std::{
    fs::File,
    io,
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{OFlag, openat},
    sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, mkdirat},
};

/// Overrides the lock directory (tests, or hosts where `/run/lock` is not shared).
pub const LOCK_DIR_ENV: &str = "CORRAL_LOCK_DIR";

/// The lock that serialises allocators (`registry.rs`, step 2).
pub(crate) const ALLOC_LOCK: &str = "alloc.lock";

/// One open lock file.
#[derive(Debug)]
pub(crate) struct SlotFile {
    pub(crate) file: File,
    pub(crate) name: String,
    /// False when the file could only be opened read-only (it still locks, but no record).
    pub(crate) writable: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot prepare the lock folder {}: {error}\nhint: {}", path.display(), folder_hint(error))]
    Folder { path: PathBuf, error: io::Error },
    #[error("{} is a symbolic link; corral never follows links in its lock folder\nhint: remove it, or point {LOCK_DIR_ENV} at a real folder", path.display())]
    Symlink { path: PathBuf },
    #[error("{} is not a regular file; someone else put it in corral's lock folder\nhint: remove it", path.display())]
    NotAFile { path: PathBuf },
    #[error("cannot open or lock {}: {error}\nhint: {}", path.display(), folder_hint(error))]
    Slot { path: PathBuf, error: io::Error },
}

/// What to do about a lock folder the system refused.
fn folder_hint(error: &io::Error) -> String {
    let elsewhere = format!("point {LOCK_DIR_ENV} at a folder this user can write");
    match error.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => format!(
            "this user may not write there: ask its owner to make it shared (mode 1777, as corral creates it), or {elsewhere}"
        ),
        Some(libc::EROFS) => format!("the file system is read-only; {elsewhere}"),
        Some(libc::ENOSPC | libc::EDQUOT) => {
            format!("the file system is full (no space or no inodes left): free some, or {elsewhere}")
        }
        Some(libc::ENOENT | libc::ENOTDIR) => {
            format!("a folder above it does not exist and cannot be made; {elsewhere}")
        }
        _ => format!("check the folder, or {elsewhere}"),
    }
}

/// Opens (creating if needed, with a mode every user can lock) the slot `name` in the folder
/// `dir` (at `path`), refusing links and anything but a regular file.
pub(crate) fn open_slot_at(dir: &OwnedFd, path: &Path, name: &str) -> Result<SlotFile, RegistryError> {
    let slot_path = || path.join(name);
    let base = OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    let mut writable = true;
    let fd = loop {
        match openat(dir, name, base | OFlag::O_RDWR, Mode::empty()) {
            Ok(fd) => break fd,
            Err(Errno::ENOENT) => {
                let create = base | OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL;
                match openat(dir, name, create, Mode::from_bits_truncate(0o666)) {
                    Ok(fd) => {
                        // The umask may have narrowed the mode; every user must be able to lock.
                        let _ = fchmod(&fd, Mode::from_bits_truncate(0o666));
                        break fd;
                    }
                    Err(Errno::EEXIST) => continue, // another process created it first
                    Err(errno) => return Err(slot_error(slot_path(), errno)),
                }
            }
            Err(Errno::EACCES) => {
                // Someone else's file with a narrow mode: a read-only descriptor still locks.
                writable = false;
                break openat(dir, name, base | OFlag::O_RDONLY, Mode::empty())
                    .map_err(|errno| slot_error(slot_path(), errno))?;
            }
            Err(errno) => return Err(slot_error(slot_path(), errno)),
        }
    };
    check_regular(&fd, &slot_path())?;
    Ok(SlotFile { file: File::from(fd), name: name.to_owned(), writable })
}

pub(crate) fn slot_error(path: PathBuf, errno: Errno) -> RegistryError {
    match errno {
        Errno::ELOOP => RegistryError::Symlink { path },
        errno => RegistryError::Slot { path, error: io::Error::from(errno) },
    }
}

pub(crate) fn check_regular(fd: &OwnedFd, path: &Path) -> Result<FileStat, RegistryError> {
    let stat = fstat(fd).map_err(|errno| slot_error(path.to_owned(), errno))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(RegistryError::NotAFile { path: path.to_owned() });
    }
    Ok(stat)
}

/// Opens a folder without following a link in its last component.
pub(crate) fn open_dir(parent: Option<&OwnedFd>, name: &Path) -> Result<OwnedFd, RegistryError> {
    let flags = OFlag::O_CLOEXEC | OFlag::O_DIRECTORY | OFlag::O_RDONLY;
    let result = match parent {
        Some(parent) => openat(parent, name, flags | OFlag::O_NOFOLLOW, Mode::empty()),
        // The user's own path: links above corral's folders are theirs to keep.
        None => nix::fcntl::open(name, flags, Mode::empty()),
    };
    result.map_err(|errno| match errno {
        Errno::ELOOP | Errno::ENOTDIR if is_symlink(parent, name) => RegistryError::Symlink { path: name.to_owned() },
        errno => RegistryError::Folder { path: name.to_owned(), error: io::Error::from(errno) },
    })
}

fn is_symlink(parent: Option<&OwnedFd>, name: &Path) -> bool {
    let Some(parent) = parent else { return false };
    nix::sys::stat::fstatat(parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK)
}

/// Creates `name` under `parent` as a shared (1777) folder if missing, then opens it.
pub(crate) fn ensure_dir(parent: &OwnedFd, name: &Path, full: &Path) -> Result<OwnedFd, RegistryError> {
    let created = match mkdirat(parent, name, Mode::from_bits_truncate(0o1777)) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(errno) => return Err(RegistryError::Folder { path: full.to_owned(), error: io::Error::from(errno) }),
    };
    let dir = open_dir(Some(parent), name).map_err(|error| match error {
        RegistryError::Symlink { .. } => RegistryError::Symlink { path: full.to_owned() },
        RegistryError::Folder { error, .. } => RegistryError::Folder { path: full.to_owned(), error },
        other => other,
    })?;
    if created {
        // mkdir applies the umask; the registry must stay shared by all users.
        let _ = fchmod(dir.as_fd(), Mode::from_bits_truncate(0o1777));
    }
    Ok(dir)
}
