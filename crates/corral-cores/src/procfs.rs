//! What `/proc` tells about other processes: liveness, command lines, and who holds which
//! `flock`.
//!
//! Readers of the registry never take a lock (a reader's shared lock, however brief, could
//! make a concurrent allocator skip a free core). Instead `/proc/locks` says which lock files
//! are held and by which pid, and `/proc/<pid>/stat`'s start time tells a live owner record
//! from a stale one whose pid was reused.

use std::{collections::HashMap, fs};

/// Identifies a file the way `/proc/locks` does: device major, minor, inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileKey {
    major: u64,
    minor: u64,
    inode: u64,
}

impl FileKey {
    pub(crate) fn of(stat: &nix::sys::stat::FileStat) -> FileKey {
        FileKey {
            major: nix::sys::stat::major(stat.st_dev),
            minor: nix::sys::stat::minor(stat.st_dev),
            inode: stat.st_ino,
        }
    }
}

/// The `flock` holders on this host: file → pid of the process that took the lock (0 when
/// that process is outside our pid namespace). `None` when `/proc/locks` cannot be read.
pub(crate) fn flock_holders() -> Option<HashMap<FileKey, u32>> {
    let text = fs::read_to_string("/proc/locks").ok()?;
    Some(parse_locks(&text))
}

/// Extra reads of `/proc/locks`, made lazily and at most [`Rereads::MAX`] per status call,
/// for files a single read may have skipped.
#[derive(Default)]
pub(crate) struct Rereads {
    seen: HashMap<FileKey, u32>,
    reads: usize,
}

impl Rereads {
    const MAX: usize = 3;

    /// The holder of `key` in any of up to `MAX` fresh reads.
    pub(crate) fn holder(&mut self, key: FileKey) -> Option<u32> {
        while !self.seen.contains_key(&key) && self.reads < Self::MAX {
            self.reads += 1;
            self.seen.extend(flock_holders().unwrap_or_default());
        }
        self.seen.get(&key).copied()
    }
}

fn parse_locks(text: &str) -> HashMap<FileKey, u32> {
    let mut holders = HashMap::new();
    for line in text.lines() {
        // `1: FLOCK  ADVISORY  WRITE 1737 fe:00:9838593 0 EOF`; waiters have `->` after the id.
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || fields[1] != "FLOCK" {
            continue;
        }
        let pid = fields[4].parse::<i64>().unwrap_or(0).max(0) as u32;
        let mut parts = fields[5].split(':');
        let (Some(major), Some(minor), Some(inode)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let key = (u64::from_str_radix(major, 16), u64::from_str_radix(minor, 16), inode.parse::<u64>());
        if let (Ok(major), Ok(minor), Ok(inode)) = key {
            holders.insert(FileKey { major, minor, inode }, pid);
        }
    }
    holders
}

/// What `/proc/<pid>/stat` says of a process, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessStat {
    /// User and system CPU time (fields 14 and 15).
    pub user_ticks: u64,
    pub system_ticks: u64,
    /// The start time since boot (field 22), which together with the pid names one process
    /// for the life of the host.
    pub start_ticks: u64,
}

/// Reads `/proc/<pid>/stat`; `None` when the process is gone or the line is not one.
pub fn process_stat(pid: u32) -> Option<ProcessStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(line: &str) -> Option<ProcessStat> {
    // The command name (field 2) may hold spaces and parentheses: fields resume after the
    // last ')', with field 3 first.
    let fields: Vec<&str> = line.get(line.rfind(')')? + 1..)?.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(ProcessStat { user_ticks: field(14)?, system_ticks: field(15)?, start_ticks: field(22)? })
}

/// The start time of `pid` (see [`ProcessStat::start_ticks`]).
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    process_stat(pid).map(|s| s.start_ticks)
}

/// The command line of `pid` with arguments joined by spaces, shortened for display.
pub(crate) fn command_line(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> =
        raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    if args.is_empty() { None } else { Some(shorten(&args.join(" "))) }
}

/// Keeps command lines readable in tables and messages.
pub(crate) fn shorten(command: &str) -> String {
    const COMMAND_CHARS_MAX: usize = 120;
    if command.chars().count() <= COMMAND_CHARS_MAX {
        return command.to_owned();
    }
    let mut short: String = command.chars().take(COMMAND_CHARS_MAX - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_is_read_past_a_command_with_parentheses() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5555 1000 10";
        let stat = parse_stat(line).expect("a stat line");
        assert_eq!((stat.user_ticks, stat.system_ticks, stat.start_ticks), (7, 3, 5555));
        assert_eq!(parse_stat("42 (short) S 1"), None);
    }

    #[test]
    fn parses_proc_locks() {
        let text = "1: FLOCK  ADVISORY  WRITE 1737 fe:00:9838593 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 1800 fe:00:9838593 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 99 00:1a:12 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE -1 00:2b:77 0 EOF\n";
        let holders = parse_locks(text);
        assert_eq!(holders.len(), 2);
        assert_eq!(holders[&FileKey { major: 0xfe, minor: 0, inode: 9838593 }], 1737);
        assert_eq!(holders[&FileKey { major: 0, minor: 0x2b, inode: 77 }], 0);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(start_ticks(me).is_some());
        assert!(command_line(me).is_some());
        assert_eq!(start_ticks(u32::MAX), None);
    }

    #[test]
    fn shortens_long_commands() {
        let long = "x".repeat(500);
        assert_eq!(shorten(&long).chars().count(), 120);
        assert_eq!(shorten("python serve.py"), "python serve.py");
    }
}
