//! Live publication: a runtime's counters, readable by any process on the host.
//!
//! A lease holder writes a [`Publication`] (per core: executions, busy time, switches, the
//! model last run; per model: calls, failures (those refused for bad inputs also counted
//! apart), queue depth per instance and the cumulative latency histogram) into one file
//! beside its first slot's lock file: `nc3.lock` gets `nc3.live`. Readers
//! ([`Registry::live`](crate::Registry::live)) take no lock and never touch the publisher.
//!
//! # Trust
//!
//! The file is untrusted input: readers read at most [`LIVE_BYTES_MAX`], and the file is one
//! JSON line followed by a line holding the FNV-1a hash of the first, so a reader that meets a
//! write half done (the publisher rewrites in place, as every user must be able to write the
//! file in a sticky folder, which rules out renames) sees a mismatch and reads again. A
//! publication counts only while the core it sits beside is held, by a live record, by the
//! very process (pid and start time) the publication names. The holder empties the file when
//! its lease ends; a killed holder's file is left behind but names a process that holds
//! nothing, and the next holder of that core overwrites it.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read, Seek},
};

use serde::{Deserialize, Serialize};

/// The most a reader reads of a publication; a longer file is reported as unreadable.
pub const LIVE_BYTES_MAX: u64 = 1 << 20;

/// How often a runtime rewrites its publication (the issue asks for 250 ms at most).
pub const PUBLISH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Tags a process for `corral monitor`'s `tag_filter` (neuron-monitor's
/// `NEURON_PROCESS_TAG` is read too).
pub const PROCESS_TAG: &str = "CORRAL_PROCESS_TAG";
pub const PROCESS_TAG_NEURON: &str = "NEURON_PROCESS_TAG";

/// One process's counters at one moment. Counters are cumulative since the process started;
/// readers take two publications and divide the difference by the time between them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Publication {
    pub pid: u32,
    /// With `pid`, names the process for the life of the host.
    pub start_ticks: u64,
    /// `CORRAL_PROCESS_TAG` (or `NEURON_PROCESS_TAG`) of the publisher, if set.
    #[serde(default)]
    pub tag: Option<String>,
    /// When the publisher took these counters.
    pub unix_ms: u64,
    /// Counts publications: a reader that sees the same number twice saw no new data.
    pub seq: u64,
    pub cores: Vec<LiveCore>,
    pub models: Vec<LiveModel>,
    /// True when models were left out to keep the publication under [`LIVE_BYTES_MAX`].
    #[serde(default)]
    pub truncated: bool,
}

/// One leased core's counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LiveCore {
    /// Device (global) index.
    pub core: usize,
    pub executions: u64,
    pub busy_ns: u64,
    pub switches: u64,
    /// The model that ran last on this core.
    #[serde(default)]
    pub model: Option<String>,
}

/// One loaded model's counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LiveModel {
    pub name: String,
    /// Names this load of the model within its process (a reload gets a new one).
    pub id: u64,
    /// Per instance, its cores (global indices, `2-3`).
    pub instances: Vec<String>,
    pub requests: u64,
    /// Calls that failed, for any reason.
    pub failures: u64,
    /// The part of `failures` refused because their inputs did not match the model's
    /// (neuron-monitor's `incorrect_input`). Publishers before this field wrote none: 0.
    #[serde(default)]
    pub input_failures: u64,
    pub executions: u64,
    /// Per instance, calls accepted and not yet answered.
    pub queue_depth: Vec<u64>,
    /// The latency histogram as `[bucket, count]` pairs for non-empty buckets; bucket `i`
    /// holds latencies up to `2^((i + 1) / 8)` µs. Successful calls only, so its total is the
    /// count of calls completed.
    pub latency: Vec<(u32, u64)>,
    /// Engine time per execution, the same buckets.
    #[serde(default)]
    pub compute: Vec<(u32, u64)>,
    /// Instances the autopilot started, retired and relocated so far (publishers before this
    /// field wrote none: 0).
    #[serde(default)]
    pub moves: Moves,
    /// Its engine (publishers before this field wrote none: empty).
    #[serde(default)]
    pub engine: ModelEngine,
}

/// The engine a model runs on, and why: what `corral ls --json` and `top` show.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModelEngine {
    /// `onnxruntime`, `openvino`, `tract`, `sim`; empty when the publisher wrote none.
    #[serde(default)]
    pub engine: String,
    /// Why, when the engine was chosen by measuring (`auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each engine's median at batch 1, in microseconds, when both were timed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub medians_us: BTreeMap<String, u64>,
}

/// The autopilot's moves of one model, by direction.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Moves {
    pub grow: u64,
    pub shrink: u64,
    #[serde(rename = "move")]
    pub relocate: u64,
}

/// Latency buckets per doubling: bucket `i` holds latencies up to `2^((i + 1) / 8)` µs
/// (about 9% wide), the scheme of every histogram a runtime keeps and publishes.
pub const LATENCY_BUCKETS_PER_OCTAVE: u32 = 8;

/// The upper bound of latency bucket `index`, in seconds.
pub fn latency_bucket_limit(index: u32) -> f64 {
    2f64.powf((index as f64 + 1.0) / LATENCY_BUCKETS_PER_OCTAVE as f64) / 1e6
}

/// The bucket of a latency of `seconds` (at most `last`).
pub fn latency_bucket(seconds: f64, last: u32) -> u32 {
    let micros = seconds * 1e6;
    if micros <= 1.0 {
        return 0;
    }
    ((micros.log2() * LATENCY_BUCKETS_PER_OCTAVE as f64) as u32).min(last)
}

/// The bucket below whose limit a `fraction` of a histogram's samples fall, from its
/// `(bucket, count)` pairs in ascending bucket order; `None` when it holds none.
pub fn bucket_percentile(buckets: &[(u32, u64)], fraction: f64) -> Option<u32> {
    let total: u64 = buckets.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64 * fraction).ceil() as u64).max(1);
    let mut seen = 0;
    let found = buckets.iter().find(|(_, n)| {
        seen += n;
        seen >= rank
    });
    found.or(buckets.last()).map(|(bucket, _)| *bucket)
}

/// The name of the publication file beside lock file `slot` (`nc3.lock` → `nc3.live`).
pub(crate) fn live_name(slot: &str) -> String {
    format!("{}.live", slot.strip_suffix(".lock").unwrap_or(slot))
}

/// Serialises `publication` as written, leaving out models (and saying so) until it fits in
/// [`LIVE_BYTES_MAX`].
pub(crate) fn encode_bounded(publication: &Publication) -> Vec<u8> {
    let bytes = encode(publication);
    if bytes.len() as u64 <= LIVE_BYTES_MAX {
        return bytes;
    }
    let mut smaller = publication.clone();
    smaller.truncated = true;
    loop {
        let bytes = encode(&smaller);
        if bytes.len() as u64 <= LIVE_BYTES_MAX || smaller.models.is_empty() {
            return bytes;
        }
        smaller.models.truncate(smaller.models.len() / 2);
    }
}

/// Serialises `publication`: its JSON line, then its hash line.
fn encode(publication: &Publication) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(publication).expect("a publication always serializes");
    let hash = fnv1a(&bytes);
    bytes.extend_from_slice(format!("\n{hash:016x}\n").as_bytes());
    bytes
}

/// Why a publication file was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unreadable {
    TooLong,
    /// Not a JSON line and its hash, even after rereads: crafted, or a writer that died mid-write.
    Torn,
    NotAPublication(String),
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::TooLong => write!(f, "longer than {LIVE_BYTES_MAX} bytes"),
            Unreadable::Torn => write!(f, "its hash does not match its content"),
            Unreadable::NotAPublication(why) => write!(f, "not a publication: {why}"),
        }
    }
}

/// Reads a publication file: `Ok(None)` when empty (no publisher, or one that ended).
pub(crate) fn read(file: &File) -> Result<Option<Publication>, Unreadable> {
    const TRIES: usize = 3;
    let mut last = Unreadable::Torn;
    for try_ in 0..TRIES {
        if try_ > 0 {
            // A write in progress: give it a moment, then read again from the start.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut bytes = Vec::new();
        let mut reader = file;
        if reader.rewind().and_then(|()| reader.take(LIVE_BYTES_MAX + 1).read_to_end(&mut bytes)).is_err() {
            return Err(Unreadable::Torn);
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        if bytes.len() as u64 > LIVE_BYTES_MAX {
            return Err(Unreadable::TooLong);
        }
        match decode(&bytes) {
            Ok(publication) => return Ok(Some(publication)),
            Err(error) => last = error,
        }
    }
    Err(last)
}

fn decode(bytes: &[u8]) -> Result<Publication, Unreadable> {
    let mut lines = bytes.split(|&b| b == b'\n');
    let (Some(json), Some(hash)) = (lines.next(), lines.next()) else { return Err(Unreadable::Torn) };
    let hash = std::str::from_utf8(hash).ok().and_then(|h| u64::from_str_radix(h, 16).ok());
    if hash != Some(fnv1a(json)) {
        return Err(Unreadable::Torn);
    }
    serde_json::from_slice(json).map_err(|error| Unreadable::NotAPublication(error.to_string()))
}

/// FNV-1a, 64 bits: enough to tell a torn write from a whole one.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publication_round_trips_and_a_changed_byte_is_caught() {
        let publication = Publication {
            pid: 7,
            models: vec![LiveModel { name: "m".into(), latency: vec![(3, 4)], ..LiveModel::default() }],
            ..Publication::default()
        };
        let bytes = encode(&publication);
        assert_eq!(decode(&bytes), Ok(publication));
        let mut torn = bytes.clone();
        torn[10] ^= 1;
        assert_eq!(decode(&torn), Err(Unreadable::Torn));
        assert_eq!(decode(&bytes[..bytes.len() / 2]), Err(Unreadable::Torn));
        assert_eq!(live_name("cpu12.lock"), "cpu12.live");
        assert!((latency_bucket_limit(7) - 2e-6).abs() < 1e-12);

        let huge = LiveModel { name: "x".repeat(100_000), ..LiveModel::default() };
        let crowded = Publication { models: vec![huge; 40], ..Publication::default() };
        let bytes = encode_bounded(&crowded);
        assert!(bytes.len() as u64 <= LIVE_BYTES_MAX);
        let kept = decode(&bytes).expect("whole");
        assert!(kept.truncated && kept.models.len() == 10, "{}", kept.models.len());
    }

    #[test]
    fn a_model_published_before_input_failures_existed_reads_as_none() {
        let old = r#"{"name":"m","id":1,"instances":["0"],"requests":3,"failures":2,"executions":1,"queue_depth":[0],"latency":[]}"#;
        let model: LiveModel = serde_json::from_str(old).expect("an older publisher's model");
        assert_eq!((model.failures, model.input_failures), (2, 0));
    }
}
