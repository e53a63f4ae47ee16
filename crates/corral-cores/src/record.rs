//! Owner records: the line a holder writes into each lock file it holds (pid, process start
//! time, command, time, lease, models), and [`Owner`], what a reader makes of one.
//!
//! Records are advisory and untrusted: any local user can write one (lock files are 0666).
//! A reader reads at most 64 KiB, parses lists as ranges without expanding them, and trusts a
//! record only while `/proc/locks` says its core is held and its process still runs.

use std::{
    collections::BTreeMap,
    fs::File,
    io::Read,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{
    ModelEngine,
    core_set::{CoreSet, parse_core_list},
    procfs,
};

/// The most of a lock file a reader reads: a record longer than this is unreadable.
pub(crate) const RECORD_BYTES_MAX: u64 = 64 << 10;

/// A lock file whose content is not an owner record (cut, garbage, or planted).
#[derive(Debug)]
pub(crate) struct Unreadable;

/// Who holds a core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub command: String,
    /// When the lease was taken; unknown when the holder wrote no record.
    pub since: Option<SystemTime>,
    /// The instances the holder published on this core, as `name[replica]`.
    pub models: Vec<String>,
    /// Every instance the holder published, on any of its cores.
    pub instances: Vec<OwnerInstance>,
    /// Each published model's engine, by name.
    pub engines: BTreeMap<String, ModelEngine>,
}

/// One instance of a model, as its holder published it: `squeezenet[1]` on nc3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerInstance {
    pub name: String,
    /// The replica's index within its model.
    pub instance: usize,
    /// Global core indices, ascending.
    pub cores: Vec<usize>,
}

/// The label a holder publishes for replica `instance` of `model` (`squeezenet[0]`).
pub fn instance_label(model: &str, instance: usize) -> String {
    format!("{model}[{instance}]")
}

/// Splits `name[instance]`; `None` for anything else.
fn parse_label(label: &str) -> Option<(&str, usize)> {
    let (name, rest) = label.rsplit_once('[')?;
    Some((name, rest.strip_suffix(']')?.parse().ok()?))
}

/// `pid 4121 (python serve.py) since 12:01:07`
impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.command)?;
        if let Some(since) = self.since {
            let stamp = humantime::format_rfc3339_seconds(since).to_string();
            write!(f, " since {} UTC", &stamp[11..19])?;
        }
        Ok(())
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
    /// Each model's engine, by name, when the holder publishes them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) engines: BTreeMap<String, ModelEngine>,
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
            engines: BTreeMap::new(),
        }
    }

    /// Reads the record of a lock file: `Ok(None)` when there is none (an empty file),
    /// `Err(Unreadable)` when the first line, within [`RECORD_BYTES_MAX`], is not a record.
    pub(crate) fn read(mut file: &File) -> Result<Option<OwnerRecord>, Unreadable> {
        let mut bytes = Vec::new();
        file.by_ref().take(RECORD_BYTES_MAX).read_to_end(&mut bytes).map_err(|_| Unreadable)?;
        if bytes.is_empty() {
            return Ok(None);
        }
        let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        serde_json::from_slice(line).map(Some).map_err(|_| Unreadable)
    }

    /// True while the recorded process is the one still running under that pid.
    pub(crate) fn is_alive(&self) -> bool {
        procfs::start_ticks(self.pid).is_some_and(|ticks| self.start_ticks == 0 || ticks == self.start_ticks)
    }

    /// The owner as seen from global core `index`.
    pub(crate) fn into_owner(self, index: usize) -> Owner {
        // The record is untrusted text: the list is parsed without expansion, then searched.
        let cores = parse_core_list(&self.cores).ok();
        let relative = cores.as_ref().and_then(|cores| cores.relative(index));
        let models = relative.and_then(|relative| self.models.get(relative)).cloned().unwrap_or_default();
        // One pass over the published lists (bounded by the record's size), grouped by key in a
        // map, so a hostile record of many labels costs n log n, not n squared.
        let mut grouped: BTreeMap<(&str, usize), Vec<usize>> = BTreeMap::new();
        for (relative, labels) in self.models.iter().enumerate() {
            let Some(global) = cores.as_ref().and_then(|cores| cores.global(relative)) else { break };
            for key in labels.iter().filter_map(|label| parse_label(label)) {
                grouped.entry(key).or_default().push(global);
            }
        }
        let instances = grouped
            .into_iter()
            .map(|((name, instance), cores)| OwnerInstance { name: name.to_owned(), instance, cores })
            .collect();
        Owner {
            pid: self.pid,
            command: self.command,
            since: Some(UNIX_EPOCH + Duration::from_millis(self.since_unix_ms)),
            models,
            instances,
            engines: self.engines,
        }
    }
}

pub fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
