//! Triton's trace extension (`docs/protocol/extension_trace.md`; `tracer.cc`,
//! `http_server.cc` `HandleTrace`): settings for the server and per model, read and changed
//! through `/v2/trace/setting`, `/v2/models/M/trace/setting` and gRPC `TraceSetting`, and
//! trace files in Triton's JSON form.
//!
//! Settings: `trace_level` (`OFF` or `TIMESTAMPS`; corral records no tensors, so `TENSORS` is
//! refused by name), `trace_rate` (every Nth request is traced), `trace_count` (how many more
//! traces; -1 for no end), `log_frequency` (every N traces go to `<file>.<i>`; 0 writes them
//! to `<file>` when the server stops). The file is the server's flag `--trace-file`, never
//! changed through the API (Triton refuses that too). A model's setting overrides the
//! server's field by field; a field cleared (`null`) falls back to the server's, and a model
//! with nothing of its own follows the server's setting again. Errors are Triton's words.
//!
//! A traced request writes Triton's objects to the trace file: `{"id", "model_name",
//! "model_version"}`, then one `{"id", "timestamps": [{"name", "ns"}]}` per point:
//! `REQUEST_START` (the request reached the server), `QUEUE_START` (decoded, waiting for its
//! cores), `COMPUTE_START`, `COMPUTE_INPUT_END`, `COMPUTE_OUTPUT_START`, `COMPUTE_END` (the
//! engine's run; inputs are bound and outputs read inside it, so the inner points equal its
//! ends), `REQUEST_END` (the answer encoded). `ns` is the monotonic clock, as Triton's
//! `steady_clock`. A file is a JSON array of those objects.
//!
//! Untraced requests pay one atomic load: nothing is locked while every setting is `OFF`.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::Instant,
};

use corral_runtime::sync::lock;
use serde_json::{Value, json};

use crate::{error::CallError, triton};

/// What a trace records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Off,
    Timestamps,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Off => "OFF",
            Level::Timestamps => "TIMESTAMPS",
        }
    }
}

/// A complete setting (the server's start-up one, or what a scope resolves to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceSetting {
    pub level: Level,
    pub rate: u32,
    pub count: i32,
    pub log_frequency: u32,
}

impl Default for TraceSetting {
    /// Triton's defaults: off, every 1000th request, no count limit, written at the end.
    fn default() -> TraceSetting {
        TraceSetting { level: Level::Off, rate: 1000, count: -1, log_frequency: 0 }
    }
}

/// The fields a scope (the server, or one model) sets itself; `None` falls back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Fields {
    level: Option<Level>,
    rate: Option<u32>,
    count: Option<i32>,
    log_frequency: Option<u32>,
}

impl Fields {
    fn is_empty(&self) -> bool {
        *self == Fields::default()
    }

    fn over(&self, base: &TraceSetting) -> TraceSetting {
        TraceSetting {
            level: self.level.unwrap_or(base.level),
            rate: self.rate.unwrap_or(base.rate),
            count: self.count.unwrap_or(base.count),
            log_frequency: self.log_frequency.unwrap_or(base.log_frequency),
        }
    }
}

/// A change asked for: per field, untouched (`None`), cleared (`Some(None)`) or set.
#[derive(Clone, Debug, Default)]
pub struct Update {
    level: Option<Option<Level>>,
    rate: Option<Option<u32>>,
    count: Option<Option<i32>>,
    log_frequency: Option<Option<u32>>,
}

/// `Unable to parse '<name>', got: <text>` and its range form, as Triton's `stoi` checks.
fn whole<T: TryFrom<i64>>(name: &str, text: &str, min: i64, max: i64) -> Result<T, CallError> {
    let digits = text.trim_start();
    let end = digits
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
        .map_or(digits.len(), |(i, _)| i);
    // Triton parses with std::stoi/stoul: leading digits count, the rest is ignored.
    let value: i128 = digits[..end].parse().map_err(|_| triton::trace_unparsable(name, text))?;
    if value < min as i128 || value > max as i128 {
        return Err(triton::trace_out_of_range(name, min, max, text));
    }
    T::try_from(value as i64).map_err(|_| triton::trace_unparsable(name, text))
}

impl Update {
    /// Reads one setting: `values` is `None` to clear it, else its values (one for every
    /// field but `trace_level`). `grpc` picks that protocol's wording where it differs.
    fn set(&mut self, name: &str, values: Option<&[String]>, grpc: bool) -> Result<(), CallError> {
        let one = |values: &[String]| -> Result<String, CallError> {
            match values {
                [value] => Ok(value.clone()),
                _ => Err(triton::trace_one_value(name)),
            }
        };
        match name {
            "trace_file" => return Err(triton::trace_file_fixed()),
            "trace_level" => {
                let Some(values) = values else {
                    self.level = Some(None);
                    return Ok(());
                };
                if values.iter().any(|v| v == "OFF") {
                    if values.len() > 1 {
                        return Err(triton::trace_off_alone());
                    }
                    self.level = Some(Some(Level::Off));
                } else if values.iter().any(|v| v == "TENSORS") {
                    return Err(CallError::bad_request(
                        "trace level TENSORS is not supported by corral, which records timestamps only; use TIMESTAMPS or OFF",
                    ));
                } else if values.iter().any(|v| v == "TIMESTAMPS") {
                    self.level = Some(Some(Level::Timestamps));
                }
                // Any other word is ignored, as Triton ignores it.
            }
            "trace_rate" => {
                self.rate =
                    Some(values.map(one).transpose()?.map(|v| whole(name, &v, 0, u32::MAX.into())).transpose()?);
            }
            "trace_count" => {
                let count = match values.map(one).transpose()? {
                    None => None,
                    Some(text) => {
                        let parsed: i64 = whole(name, &text, i64::MIN, i64::MAX)?;
                        if parsed < -1 {
                            return Err(triton::trace_count_below(name, &text, grpc));
                        }
                        Some(whole(name, &text, -1, i32::MAX.into())?)
                    }
                };
                self.count = Some(count);
            }
            "log_frequency" => {
                self.log_frequency =
                    Some(values.map(one).transpose()?.map(|v| whole(name, &v, 0, u32::MAX.into())).transpose()?);
            }
            _ => {} // other keys are ignored, as Triton ignores them
        }
        Ok(())
    }

    /// A REST body: `{"trace_level": ["TIMESTAMPS"], "trace_rate": "1", …}`, `null` clearing.
    pub fn from_json(body: &Value) -> Result<Update, CallError> {
        let mut update = Update::default();
        let Value::Object(fields) = body else {
            return Err(triton::json_type("object"));
        };
        let order = ["trace_file", "trace_level", "trace_rate", "trace_count", "log_frequency"];
        for name in order {
            let Some(value) = fields.get(name) else { continue };
            let values = match (name, value) {
                (_, Value::Null) => None,
                ("trace_level", Value::Array(items)) => Some(
                    items
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| triton::json_type("string"))?,
                ),
                ("trace_level", _) => return Err(triton::json_type("array")),
                ("trace_file", _) => Some(Vec::new()),
                (_, Value::String(text)) => Some(vec![text.clone()]),
                _ => return Err(triton::json_type("string")),
            };
            update.set(name, values.as_deref(), false)?;
        }
        Ok(update)
    }

    /// A gRPC request's settings: a key with no values clears it.
    pub fn from_grpc(settings: &BTreeMap<String, Vec<String>>) -> Result<Update, CallError> {
        let mut update = Update::default();
        if let Some(values) = settings.get("trace_file") {
            update.set("trace_file", Some(values), true)?;
        }
        for (name, values) in settings {
            let values = (!values.is_empty()).then_some(values.as_slice());
            update.set(name, values, true)?;
        }
        Ok(update)
    }

    fn apply(&self, fields: &mut Fields) {
        if let Some(level) = self.level {
            fields.level = level;
        }
        if let Some(rate) = self.rate {
            fields.rate = rate;
        }
        if let Some(count) = self.count {
            fields.count = count;
        }
        if let Some(frequency) = self.log_frequency {
            fields.log_frequency = frequency;
        }
    }
}

/// One traced request's points, by name, as they happen.
pub struct Trace {
    id: u64,
    model: String,
    version: u64,
    points: Vec<(&'static str, Instant)>,
}

impl Trace {
    pub fn point(&mut self, name: &'static str, at: Instant) {
        self.points.push((name, at));
    }
}

/// Where a scope's sampling stands: requests seen, and traces still to take.
#[derive(Debug, Default)]
struct Sampler {
    seen: u64,
    /// `None` until the scope's setting is first used; then its count, counting down.
    remaining: Option<i64>,
}

#[derive(Default)]
struct Inner {
    server: Fields,
    models: BTreeMap<String, Fields>,
    samplers: BTreeMap<Option<String>, Sampler>,
    /// Trace objects not yet written, and how many traces they hold.
    buffer: Vec<Value>,
    buffered: u32,
    /// The next `<file>.<i>`.
    file_index: u32,
}

/// The server's trace settings and its trace file.
pub struct Traces {
    file: Option<PathBuf>,
    start: TraceSetting,
    inner: Mutex<Inner>,
    /// False while every setting is OFF: untraced requests skip the lock.
    any_on: AtomicBool,
    next_id: AtomicU64,
    /// The monotonic clock at `base`, so instants become `steady_clock` nanoseconds.
    base: (Instant, u64),
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid one it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

impl Traces {
    /// The server's start-up setting (its flags) and trace file.
    pub fn new(file: Option<PathBuf>, start: TraceSetting) -> Traces {
        Traces {
            any_on: AtomicBool::new(start.level != Level::Off),
            file,
            start,
            inner: Mutex::new(Inner::default()),
            next_id: AtomicU64::new(1),
            base: (Instant::now(), monotonic_ns()),
        }
    }

    fn server_setting(&self, inner: &Inner) -> TraceSetting {
        inner.server.over(&self.start)
    }

    fn resolved(&self, inner: &Inner, model: Option<&str>) -> TraceSetting {
        let server = self.server_setting(inner);
        match model.and_then(|m| inner.models.get(m)) {
            Some(fields) => fields.over(&server),
            None => server,
        }
    }

    /// The scope that decides for `model`: its own when it has fields, else the server's.
    fn scope(inner: &Inner, model: &str) -> Option<String> {
        inner.models.contains_key(model).then(|| model.to_owned())
    }

    /// A setting as the API shows it (Triton's keys; every value a string).
    fn show(&self, inner: &Inner, model: Option<&str>) -> Value {
        let setting = self.resolved(inner, model);
        let scope = model.and_then(|m| Self::scope(inner, m));
        let count = inner.samplers.get(&scope).and_then(|s| s.remaining).unwrap_or(setting.count.into());
        json!({
            "trace_level": [setting.level.name()],
            "trace_rate": setting.rate.to_string(),
            "trace_count": count.to_string(),
            "log_frequency": setting.log_frequency.to_string(),
            "trace_file": self.file.as_ref().map(|f| f.display().to_string()).unwrap_or_default(),
            "trace_mode": "triton",
        })
    }

    /// The setting of the server (`model` `None`) or of a model, as the API shows it.
    pub fn get(&self, model: Option<&str>) -> Value {
        self.show(&lock(&self.inner), model)
    }

    /// Changes the server's or a model's setting; answers the setting that results. A
    /// setting that could not trace is refused and nothing changes (Triton's words).
    pub fn update(&self, model: Option<&str>, update: &Update) -> Result<Value, CallError> {
        let mut inner = lock(&self.inner);
        let mut fields = match model {
            None => inner.server.clone(),
            Some(m) => inner.models.get(m).cloned().unwrap_or_default(),
        };
        update.apply(&mut fields);
        let resolved = match model {
            None => fields.over(&self.start),
            Some(_) => fields.over(&self.server_setting(&inner)),
        };
        if resolved.level != Level::Off {
            if resolved.rate == 0 {
                return Err(triton::trace_rate_zero());
            }
            if self.file.is_none() {
                return Err(triton::trace_file_missing());
            }
            if resolved.count == 0 {
                return Err(triton::trace_count_zero());
            }
        }
        match model {
            None => inner.server = fields,
            Some(m) if fields.is_empty() => {
                inner.models.remove(m);
            }
            Some(m) => {
                inner.models.insert(m.to_owned(), fields);
            }
        }
        // A changed scope samples afresh (its count starts again), as a new Triton setting.
        let scope = model.map(str::to_owned);
        inner.samplers.remove(&scope);
        if model.is_none() {
            let models: Vec<String> = inner.models.keys().cloned().collect();
            for m in models {
                inner.samplers.remove(&Some(m));
            }
        }
        let on = self.server_setting(&inner).level != Level::Off
            || inner.models.keys().any(|m| self.resolved(&inner, Some(m)).level != Level::Off);
        self.any_on.store(on, Relaxed);
        Ok(self.show(&inner, model))
    }

    /// Whether this request of `model` (version `version`) is traced; its trace if so,
    /// starting at `start`.
    pub fn sample(&self, model: &str, version: u64, start: Instant) -> Option<Trace> {
        if !self.any_on.load(Relaxed) {
            return None;
        }
        let mut inner = lock(&self.inner);
        let setting = self.resolved(&inner, Some(model));
        if setting.level == Level::Off || setting.rate == 0 {
            return None;
        }
        let scope = Self::scope(&inner, model);
        let sampler = inner.samplers.entry(scope).or_default();
        let remaining = sampler.remaining.get_or_insert(setting.count.into());
        sampler.seen += 1;
        // The first request and every `rate`-th after it, while the count lasts.
        if *remaining == 0 || !(sampler.seen - 1).is_multiple_of(u64::from(setting.rate)) {
            return None;
        }
        if *remaining > 0 {
            *remaining -= 1;
        }
        let id = self.next_id.fetch_add(1, Relaxed);
        Some(Trace { id, model: model.to_owned(), version, points: vec![("REQUEST_START", start)] })
    }

    fn ns(&self, at: Instant) -> u64 {
        let (base, base_ns) = self.base;
        match at.checked_duration_since(base) {
            Some(after) => base_ns + after.as_nanos() as u64,
            None => base_ns.saturating_sub(base.duration_since(at).as_nanos() as u64),
        }
    }

    /// Records a finished trace; writes a file when the setting says it is time.
    pub fn finish(&self, mut trace: Trace, end: Instant) {
        trace.point("REQUEST_END", end);
        let mut inner = lock(&self.inner);
        let header = json!({ "id": trace.id, "model_name": trace.model, "model_version": trace.version });
        inner.buffer.push(header);
        for (name, at) in &trace.points {
            let point = json!({ "id": trace.id, "timestamps": [{ "name": name, "ns": self.ns(*at) }] });
            inner.buffer.push(point);
        }
        inner.buffered += 1;
        let setting = self.resolved(&inner, Some(&trace.model));
        let scope = Self::scope(&inner, &trace.model);
        let counted_out = inner.samplers.get(&scope).and_then(|s| s.remaining) == Some(0);
        if (setting.log_frequency > 0 && inner.buffered >= setting.log_frequency) || counted_out {
            self.write(&mut inner, true);
        }
    }

    /// Writes what is buffered: to `<file>.<i>` (the next index) when `indexed`, else to
    /// `<file>` itself (log_frequency 0, at the end).
    fn write(&self, inner: &mut Inner, indexed: bool) {
        let Some(file) = &self.file else { return };
        if inner.buffer.is_empty() {
            return;
        }
        let path = if indexed {
            let path = PathBuf::from(format!("{}.{}", file.display(), inner.file_index));
            inner.file_index += 1;
            path
        } else {
            file.clone()
        };
        let objects = std::mem::take(&mut inner.buffer);
        inner.buffered = 0;
        let text = serde_json::to_string(&Value::Array(objects)).expect("JSON values serialize");
        if let Err(error) = std::fs::write(&path, text) {
            tracing::warn!("cannot write the trace file {}: {error}", path.display());
        }
    }

    /// Writes the traces still buffered (the server stops).
    pub fn flush(&self) {
        let mut inner = lock(&self.inner);
        let indexed = inner.file_index > 0 || self.server_setting(&inner).log_frequency > 0;
        self.write(&mut inner, indexed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_update(body: &str) -> Result<Update, CallError> {
        Update::from_json(&serde_json::from_str(body).expect("JSON"))
    }

    #[test]
    fn settings_resolve_per_model_over_the_server_and_errors_are_tritons() {
        let dir = tempfile::tempdir().expect("dir");
        let traces = Traces::new(Some(dir.path().join("trace.json")), TraceSetting::default());
        let get = |model| traces.get(model);
        assert_eq!(get(None)["trace_level"], json!(["OFF"]));
        assert_eq!(get(None)["trace_rate"], "1000");
        let on = json_update(r#"{"trace_level": ["TIMESTAMPS"], "trace_rate": "1"}"#).expect("parses");
        traces.update(None, &on).expect("valid");
        let model = json_update(r#"{"trace_rate": "3", "trace_count": "2"}"#).expect("parses");
        let shown = traces.update(Some("m"), &model).expect("valid");
        assert_eq!((shown["trace_rate"].as_str(), shown["trace_count"].as_str()), (Some("3"), Some("2")));
        assert_eq!(get(Some("other"))["trace_rate"], "1", "a model without its own follows the server");
        // Requests 1 and 4 of `m` are traced (every 3rd), then the count of 2 is spent.
        let start = Instant::now();
        let traced: Vec<bool> = (0..9).map(|_| traces.sample("m", 1, start).is_some()).collect();
        assert_eq!(traced, [true, false, false, true, false, false, false, false, false]);
        assert_eq!(get(Some("m"))["trace_count"], "0");
        // Clearing every field of the model gives it back to the server's setting.
        let clear = json_update(r#"{"trace_rate": null, "trace_count": null}"#).expect("parses");
        assert_eq!(traces.update(Some("m"), &clear).expect("valid")["trace_rate"], "1");
        let errors = [
            (r#"{"trace_file": "x"}"#, "trace file location can not be updated through network protocol"),
            (r#"{"trace_level": ["OFF", "TIMESTAMPS"]}"#, "Expect only one trace level 'OFF' is specified"),
            (r#"{"trace_rate": "x"}"#, "Unable to parse 'trace_rate', got: x"),
            (
                r#"{"trace_rate": "-1"}"#,
                "Unable to parse 'trace_rate', value is out of range [ 0, 4294967295 ], got: -1",
            ),
            (r#"{"trace_count": "-2"}"#, "Unable to parse 'trace_count'. Expecting value >= -1, got:-2"),
            (r#"{"trace_rate": 5}"#, "attempt to access JSON non-string as string"),
            (r#"{"trace_level": "TIMESTAMPS"}"#, "attempt to access JSON non-array as array"),
        ];
        for (body, message) in errors {
            assert_eq!(json_update(body).err().map(|e| e.message).as_deref(), Some(message), "{body}");
        }
        let zero = json_update(r#"{"trace_rate": "0"}"#).expect("parses");
        assert_eq!(
            traces.update(None, &zero).unwrap_err().message,
            "Attempting to set invalid trace setting :sample rate must be non-zero"
        );
        let fileless = Traces::new(None, TraceSetting::default());
        assert_eq!(
            fileless.update(None, &on).unwrap_err().message,
            "Attempting to set invalid trace setting :trace file name is not given"
        );
    }

    #[test]
    fn traces_are_written_in_tritons_json_with_ordered_timestamps() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("trace.json");
        let start = TraceSetting { level: Level::Timestamps, rate: 1, count: -1, log_frequency: 1 };
        let traces = Traces::new(Some(file.clone()), start);
        let begin = Instant::now();
        let mut trace = traces.sample("m", 3, begin).expect("traced");
        trace.point("QUEUE_START", begin + std::time::Duration::from_micros(5));
        traces.finish(trace, begin + std::time::Duration::from_micros(9));
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("trace.json.0")).expect("written"))
                .expect("JSON");
        assert_eq!(written[0], json!({"id": 1, "model_name": "m", "model_version": 3}));
        let names: Vec<&str> = written.as_array().expect("array")[1..]
            .iter()
            .map(|o| o["timestamps"][0]["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["REQUEST_START", "QUEUE_START", "REQUEST_END"]);
        let ns: Vec<u64> = written.as_array().expect("array")[1..]
            .iter()
            .map(|o| o["timestamps"][0]["ns"].as_u64().expect("ns"))
            .collect();
        assert!(ns.windows(2).all(|w| w[0] <= w[1]) && ns[2] - ns[0] == 9_000, "{ns:?}");
    }
}
