//! `corral monitor` and `corral top` against real publishers: a `corral serve` the test calls
//! and a `corral bench` that keeps its core busy, both on a simulated device (honest timing:
//! a simulated execution takes its latency in wall time), plus crafted publication files.
//! Reports are checked against `schemas/monitor-report.json` (which `schema.rs` checks against
//! neuron-monitor's documentation) and read by a consumer written as neuron-monitor's are.

use std::{
    collections::BTreeMap,
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{
    Holder, Host,
    schema::{monitor_schema as schema, violations},
    serve::{Server, http, put_sim},
};

/// A child process, killed when dropped, and the folder it reads (removed after it).
struct Killed(std::process::Child, #[allow(dead_code)] tempfile::TempDir);

impl Killed {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `corral bench` keeping one core of `sim:4` busy for a minute with a model of 20 ms
/// (long enough that the gaps between calls are a small share even on a loaded machine).
fn busy_bench(host: &Host) -> Killed {
    let dir = tempfile::tempdir().expect("dir");
    put_sim(dir.path(), "tick", 20);
    let repo = dir.path().to_str().expect("utf-8");
    let args = ["bench", "--model-repository", repo, "--device", "sim:4", "--num-cores", "1", "--duration", "60"];
    let mut command = host.corral(&[&args[..], &["--threads", "2"]].concat());
    command.env("CORRAL_PROCESS_TAG", "busy").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    Killed(command.spawn().expect("bench starts"), dir)
}

/// The runtime of `report` published by `pid`.
fn runtime(report: &Value, pid: u32) -> Option<&Value> {
    report["neuron_runtime_data"].as_array()?.iter().find(|r| r["pid"] == pid)
}

fn completed(runtime: &Value) -> u64 {
    runtime["report"]["execution_stats"]["execution_summary"]["completed"].as_u64().expect("completed")
}

/// Utilisation (percent) of each core the runtime holds.
fn utilization(runtime: &Value) -> Vec<f64> {
    let cores = runtime["report"]["neuroncore_counters"]["neuroncores_in_use"].as_object().expect("cores");
    cores.values().map(|c| c["neuroncore_utilization"].as_f64().expect("number")).collect()
}

struct Monitor {
    holder: Holder,
    schema: Value,
    /// Every report line read, as printed.
    lines: Vec<String>,
}

impl Monitor {
    fn start(host: &Host, extra: &[&str]) -> Monitor {
        let command = host.corral(&[&["monitor", "--device", "sim:4", "--period", "0.5"], extra].concat());
        Monitor { holder: Holder::start(command).expect("monitor starts"), schema: schema(), lines: Vec::new() }
    }

    /// The next report, checked against the schema.
    fn next(&mut self) -> Value {
        let line = std::mem::take(&mut self.holder.first_line);
        let line = if line.is_empty() { self.holder.next_line() } else { line };
        let report: Value = serde_json::from_str(&line).expect("a report is one JSON line");
        let broken = violations(&self.schema, &self.schema, &report, "$");
        assert!(broken.is_empty(), "the report breaks the schema: {broken:#?}\n{report:#}");
        self.lines.push(line.trim_end().to_owned());
        report
    }

    /// Reports until one satisfies `done`, within `limit`.
    fn until(&mut self, limit: Duration, what: &str, mut done: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let report = self.next();
            if done(&report) {
                return report;
            }
            assert!(Instant::now() < deadline, "no report showed {what} in {limit:?}; the last:\n{report:#}");
        }
    }
}

#[test]
fn monitor_reports_follow_the_schema_count_every_call_and_drop_ended_processes() {
    let host = Host::new();
    let repo = tempfile::tempdir().expect("dir");
    put_sim(repo.path(), "tick", 2);
    let device = ["--device", "sim:4", "--num-cores", "1"];
    let server = Server::start_with(&host, repo.path(), &device, &[("CORRAL_PROCESS_TAG", "served")]);
    server.wait_ready();
    let mut bench = busy_bench(&host);
    let (served, busy) = (server.child.id(), bench.id());
    let mut monitor = Monitor::start(&host, &[]);

    // Both publish; the bench's core is saturated while the server's is idle.
    monitor.until(Duration::from_secs(30), "a busy bench", |r| {
        runtime(r, busy).is_some_and(|b| completed(b) > 0) && runtime(r, served).is_some()
    });
    let report = monitor.next(); // a whole period of the bench at work
    let bench_runtime = runtime(&report, busy).expect("bench");
    assert_eq!(bench_runtime["neuron_runtime_tag"], "busy");
    // How near 100% depends on how promptly a loaded machine runs the bench's callers: the
    // test checks what cannot vary, a busy core above zero and nothing above 100.
    let used = utilization(bench_runtime)[0];
    assert!(used > 0.0 && used <= 100.0, "a saturated core is busy, at most 100%: {bench_runtime:#}");
    let served_runtime = runtime(&report, served).expect("server");
    assert_eq!(served_runtime["neuron_runtime_tag"], "served");
    assert_eq!(utilization(served_runtime), vec![0.0], "an idle core is at 0");
    let loaded = &served_runtime["report"]["memory_used"]["loaded_models"];
    assert_eq!(loaded[0]["name"], "tick@1", "the server names version 1 of `tick` `tick@1`");

    // Every call the test makes is counted once, across however many periods it spans.
    let calls = 25;
    for _ in 0..calls {
        let (status, body) = http(
            &server.http,
            "POST",
            "/v2/models/tick/infer",
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#,
        );
        assert_eq!(status, 200, "{body}");
    }
    let mut counted = 0;
    let mut quiet = 0;
    monitor.until(Duration::from_secs(30), "the calls settle", |r| {
        let n = runtime(r, served).map_or(0, completed);
        counted += n;
        quiet = if n == 0 && counted > 0 { quiet + 1 } else { 0 };
        quiet >= 2
    });
    assert_eq!(counted, calls, "completed, summed over the reports, is the calls made");

    // A process that ends is gone from the next reports.
    bench.0.kill().expect("kill");
    bench.0.wait().expect("reaped");
    let report = monitor.until(Duration::from_secs(5), "the bench gone", |r| runtime(r, busy).is_none());
    assert!(runtime(&report, served).is_some(), "the server stays");
}

/// A program written against neuron-monitor's documented output, reading reports the way its
/// Prometheus companion (`neuron-monitor-prometheus.py`, the `process_*` functions) does: one
/// report per stdin line, every metric group it knows with `[]` (a missing key is a
/// `KeyError`), counts fed to counters that cannot go down; plus wandb's `trainium.py`, which
/// builds dataclasses from the memory breakdowns with `**` (an extra key is a `TypeError`)
/// and reads `int(pid)`. Prints what it gathered as one JSON line.
const CONSUMER: &str = r#"
import dataclasses, json, sys

@dataclasses.dataclass
class HostMemoryUsage:
    application_memory: int
    constants: int
    dma_buffers: int
    tensors: int

@dataclasses.dataclass
class NeuronCoreMemoryUsage:
    constants: int
    model_code: int
    model_shared_scratchpad: int
    runtime_memory: int
    tensors: int

gauges, counters, handled = {}, {}, {}
latency_set, latency_null = 0, 0

def gauge(name, value, **labels):
    gauges[name + repr(sorted(labels.items()))] = float(value)

def inc(name, value, **labels):
    if value < 0:
        raise ValueError(f"{name} cannot go down by {value}")
    counters.setdefault(name, {}).setdefault(labels["tag"], {})
    key = labels.get("error_type") or labels.get("status_type") or labels.get("event_type")
    counters[name][labels["tag"]][key] = counters[name][labels["tag"]].get(key, 0) + value

def process_neuroncore_counters(data, labels):
    for nc_idx, nc_data in data["neuroncores_in_use"].items():
        gauge("neuroncore_utilization_ratio", nc_data["neuroncore_utilization"] / 100.0, neuroncore=int(nc_idx), **labels)

def process_neuron_runtime_vcpu_usage(data, labels):
    for field in ["user", "system"]:
        gauge("neuron_runtime_vcpu_usage_ratio", data["vcpu_usage"][field] / 100.0, usage_type=field, **labels)

def process_memory_used(data, labels):
    for location in ["host", "neuron_device"]:
        gauge("neuron_runtime_memory_used_bytes", data["neuron_runtime_used_bytes"][location], memory_location=location, **labels)
    breakdown = data["neuron_runtime_used_bytes"]["usage_breakdown"]
    HostMemoryUsage(**breakdown["host"])
    for nc_idx, nc_data in breakdown["neuroncore_memory_usage"].items():
        NeuronCoreMemoryUsage(**nc_data)
        for usage_type in ["constants", "model_code", "model_shared_scratchpad", "runtime_memory", "tensors"]:
            gauge("neuroncore_memory_usage_" + usage_type, nc_data[usage_type], neuroncore=int(nc_idx), **labels)

def process_execution_stats(data, labels):
    global latency_set, latency_null
    error_summary = data["error_summary"]
    for error_type in error_summary:
        inc("execution_errors_total", error_summary[error_type], error_type=error_type, **labels)
    execution_summary = data["execution_summary"]
    for execution_outcome in execution_summary:
        inc("execution_status_total", execution_summary[execution_outcome], status_type=execution_outcome, **labels)
    latency_stats = data["latency_stats"]
    if latency_stats["total_latency"] is not None:
        latency_set += 1
        for percentile in latency_stats["total_latency"]:
            gauge("execution_latency_seconds", latency_stats["total_latency"][percentile], percentile=percentile, **labels)
    else:
        latency_null += 1

def process_neuron_hw_counters(data, labels):
    for device in data["neuron_devices"]:
        for counter in ["mem_ecc_corrected", "mem_ecc_uncorrected", "sram_ecc_corrected", "sram_ecc_uncorrected"]:
            inc("hardware_ecc_events_total", device[counter], event_type=counter, neuron_device_index=device["neuron_device_index"], **labels)

def process_vcpu_usage(data, labels):
    gauge("system_vcpu_count", len(data["usage_data"]), **labels)
    aggregation = {"user": ["user", "nice"], "system": ["system", "io_wait", "irq", "soft_irq"]}
    for usage_type, fields in aggregation.items():
        gauge("system_vcpu_usage_ratio", sum(data["average_usage"][f] for f in fields) / 100.0, usage_type=usage_type, **labels)

def process_memory_info(data, labels):
    for entry, metric in [("memory", "system_memory"), ("swap", "system_swap")]:
        for stat in ["total_bytes", "used_bytes"]:
            gauge(metric + "_" + stat, data[entry + "_" + stat], **labels)

def process_groups(groups, labels):
    for name, data in groups.items():
        handler = globals().get("process_" + name)
        if handler is not None and data["error"] == "":
            handler(data, labels)
            handled[name] = handled.get(name, 0) + 1

reports, instance_labels = 0, None
while True:
    line = sys.stdin.readline()
    if len(line) == 0:
        break
    monitor_data = json.loads(line)
    reports += 1
    if instance_labels is None:
        info = monitor_data["instance_info"]
        names = ["instance_name", "instance_id", "instance_type", "instance_availability_zone", "instance_region", "subnet_id"]
        instance_labels = {name: info[name] for name in names}
        hardware = monitor_data["neuron_hardware_info"]
        gauge("neuron_hardware_info", 1, neuron_device_count=str(hardware["neuron_device_count"]),
              neuroncore_per_device_count=str(hardware["neuroncore_per_device_count"]), **instance_labels)
    for runtime in monitor_data.get("neuron_runtime_data", []):
        int(runtime["pid"])
        if runtime["error"] != "":
            continue
        process_groups(runtime["report"], {"tag": runtime["neuron_runtime_tag"], **instance_labels})
    if monitor_data["system_data"] is not None:
        process_groups(monitor_data["system_data"], {"tag": "", **instance_labels})

print(json.dumps({"reports": reports, "handled": sorted(handled), "counters": counters,
                  "latency_set": latency_set, "latency_null": latency_null, "gauges": len(gauges)}))
"#;

/// Runs [`CONSUMER`] over `lines` (one report each) with the project's Python.
fn consume(lines: &[String]) -> Value {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    let mut child = Command::new(&python)
        .args(["-c", CONSUMER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{} runs ({error}); ./scripts/setup creates it", python.display()));
    let mut stdin = child.stdin.take().expect("piped");
    for line in lines {
        writeln!(stdin, "{line}").expect("the consumer reads");
    }
    drop(stdin);
    let output = child.wait_with_output().expect("the consumer ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the consumer failed on corral's reports:\n{stderr}\n{}", lines.join("\n"));
    serde_json::from_slice(&output.stdout).expect("the consumer prints JSON")
}

/// The counts of a report's `execution_stats` group `group` added to `sums`.
fn add_counts(sums: &mut BTreeMap<String, u64>, runtime: &Value, group: &str) {
    for (name, count) in runtime["report"]["execution_stats"][group].as_object().expect("counts") {
        *sums.entry(name.clone()).or_default() += count.as_u64().expect("a count");
    }
}

#[test]
fn idle_and_loaded_reports_carry_every_documented_field_count_bad_inputs_and_feed_a_neuron_monitor_consumer() {
    let host = Host::new();
    let mut monitor = Monitor::start(&host, &[]);
    let empty = monitor.next();
    assert_eq!(empty["neuron_runtime_data"], json!([]), "nothing holds a core yet: {empty:#}");
    expect_test::expect![[r#"
        {"error":"","logical_neuroncore_config":1,"neuron_device_count":1,"neuron_device_memory_size":0,"neuron_device_type":"sim:4","neuron_device_version":"","neuroncore_per_device_count":4,"neuroncore_version":""}
        [{"mem_ecc_corrected":0,"mem_ecc_uncorrected":0,"neuron_device_index":0,"sram_ecc_corrected":0,"sram_ecc_uncorrected":0}]"#]].assert_eq(&format!(
        "{}\n{}",
        empty["neuron_hardware_info"],
        empty["system_data"]["neuron_hw_counters"]["neuron_devices"]
    ));

    let repo = tempfile::tempdir().expect("dir");
    put_sim(repo.path(), "tick", 2);
    let device = ["--device", "sim:4", "--visible-cores", "1"];
    let server = Server::start_with(&host, repo.path(), &device, &[("CORRAL_PROCESS_TAG", "served")]);
    server.wait_ready();
    let served = server.child.id();

    // Idle: no call yet, so no latency, and zeros wherever a CPU cannot know.
    let idle = monitor.until(Duration::from_secs(30), "the server", |r| runtime(r, served).is_some());
    let report = &runtime(&idle, served).expect("server")["report"];
    assert_eq!(report["execution_stats"]["latency_stats"], json!({"total_latency": null, "device_latency": null}));
    assert_eq!(report["neuroncore_counters"]["neuroncores_in_use"]["1"]["flops"], 0);
    let used = &report["memory_used"]["neuron_runtime_used_bytes"];
    assert!(used["host"].as_u64().expect("bytes") > 0, "resident memory: {used:#}");
    assert_eq!(used["usage_breakdown"]["host"]["application_memory"], used["host"]);
    let per_core = used["usage_breakdown"]["neuroncore_memory_usage"].as_object().expect("per core");
    assert_eq!(per_core.keys().collect::<Vec<_>>(), ["1"], "the core it holds: {used:#}");
    let subgraph = &report["memory_used"]["loaded_models"][0]["subgraphs"]["sg_00"];
    assert_eq!((&subgraph["neuroncore_index"], &subgraph["memory_used_bytes"]["host"]), (&json!(1), &json!(0)));

    // A call whose input does not match the model is incorrect_input (a model-related error),
    // never generic; three good calls complete.
    let bad = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,2]}]}"#;
    let (status, body) = http(&server.http, "POST", "/v2/models/tick/infer", bad);
    assert_eq!(status, 400, "{body}");
    let good = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;
    for _ in 0..3 {
        let (status, body) = http(&server.http, "POST", "/v2/models/tick/infer", good);
        assert_eq!(status, 200, "{body}");
    }
    let (mut outcomes, mut errors) = (BTreeMap::new(), BTreeMap::new());
    let mut loaded = None;
    monitor.until(Duration::from_secs(30), "the four calls", |r| {
        let Some(served) = runtime(r, served) else { return false };
        add_counts(&mut outcomes, served, "execution_summary");
        add_counts(&mut errors, served, "error_summary");
        if completed(served) > 0 {
            loaded = Some(served.clone());
        }
        outcomes["completed"] >= 3 && outcomes["incorrect_input"] >= 1
    });
    expect_test::expect![[r#"
        {"completed":3,"completed_with_err":0,"completed_with_num_err":0,"failed_to_queue":0,"incorrect_input":1,"timed_out":0}
        {"generic":0,"hardware":0,"model":1,"numerical":0,"runtime":0,"transient":0}"#]].assert_eq(&format!("{}\n{}", json!(outcomes), json!(errors)));
    let latency = &loaded.expect("a period with calls")["report"]["execution_stats"]["latency_stats"];
    for percentiles in [&latency["total_latency"], &latency["device_latency"]] {
        let keys: Vec<&String> = percentiles.as_object().expect("a period with calls has latencies").keys().collect();
        assert_eq!(keys.len(), 7, "{latency:#}");
    }

    // The consumer reads every report: empty, idle and loaded.
    let consumed = consume(&monitor.lines);
    assert_eq!(consumed["reports"], monitor.lines.len());
    let groups = ["execution_stats", "memory_info", "memory_used", "neuron_hw_counters"];
    let groups = [&groups[..], &["neuron_runtime_vcpu_usage", "neuroncore_counters", "vcpu_usage"]].concat();
    assert_eq!(consumed["handled"], json!(groups), "every documented group: {consumed:#}");
    let counted = &consumed["counters"];
    assert_eq!(counted["execution_status_total"]["served"], json!(outcomes), "{consumed:#}");
    assert_eq!(counted["execution_errors_total"]["served"], json!(errors), "{consumed:#}");
    assert!(consumed["latency_set"].as_u64() > Some(0) && consumed["latency_null"].as_u64() > Some(0), "{consumed:#}");
}

#[test]
fn a_config_file_filters_by_tag_and_bad_ones_say_what_is_wrong() {
    let host = Host::new();
    let repo = tempfile::tempdir().expect("dir");
    put_sim(repo.path(), "tick", 2);
    let server = Server::start_with(
        &host,
        repo.path(),
        &["--device", "sim:4", "--num-cores", "1"],
        &[("NEURON_PROCESS_TAG", "app-1")],
    );
    server.wait_ready();
    let _bench = busy_bench(&host);
    let config = repo.path().join("monitor.json");
    std::fs::write(
        &config,
        r#"{"period": "500ms", "neuron_runtimes": [{"tag_filter": "app-.*", "metrics": [{"type": "execution_stats"}, {"type": "neuroncore_counters", "period": "2s"}]}], "system_metrics": [{"type": "memory_info"}]}"#,
    )
    .expect("config");
    let mut monitor = Monitor::start(&host, &["-c", config.to_str().expect("utf-8")]);
    let report = monitor.until(Duration::from_secs(30), "the server", |r| runtime(r, server.child.id()).is_some());
    let runtimes = report["neuron_runtime_data"].as_array().expect("list");
    assert_eq!(runtimes.len(), 1, "the bench (tag busy) is filtered out: {report:#}");
    let groups: Vec<&String> = runtimes[0]["report"].as_object().expect("report").keys().collect();
    assert_eq!(groups, ["execution_stats", "neuroncore_counters"]);
    let system: Vec<&String> = report["system_data"].as_object().expect("system").keys().collect();
    assert_eq!(system, ["memory_info"]);

    for (text, says) in [
        (r#"{"period": "soon"}"#, "`soon` is not a period"),
        (r#"{"neuron_runtimes": [{"tag_filter": "(", "metrics": []}]}"#, "tag_filter `(` is not a regular expression"),
        (r#"{"neuron_runtimes": [{"metrics": [{"type": "flops"}]}]}"#, "unknown metric type `flops`"),
        (r#"{"periodd": "1s"}"#, "is not a monitor configuration: unknown field `periodd`"),
    ] {
        std::fs::write(&config, text).expect("config");
        let output = host.run(&["monitor", "--device", "sim:4", "-c", config.to_str().expect("utf-8")], &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(says), "{text}: {stderr}");
    }
}

/// Writes `bytes` as the publication beside `core` of `sim:4`.
fn plant(host: &Host, core: usize, bytes: &[u8]) {
    std::fs::write(host.dir.path().join(format!("sim-4/nc{core}.live")), bytes).expect("world-writable");
}

#[test]
fn killed_publishers_and_crafted_files_leave_top_monitor_and_ls_working() {
    let host = Host::new();
    let repo = tempfile::tempdir().expect("dir");
    put_sim(repo.path(), "tick", 2);
    let mut server = Server::start_with(&host, repo.path(), &["--device", "sim:4", "--visible-cores", "2"], &[]);
    server.wait_ready();
    let publication = host.dir.path().join("sim-4/nc2.live");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&publication).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "the server never published");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL: the file stays behind, naming a process that holds nothing.
    server.child.kill().expect("kill");
    server.child.wait().expect("reaped");
    assert!(std::fs::metadata(&publication).expect("left behind").len() > 0);
    // A holder that publishes nothing sits on nc0 beside a torn file, and on nc1 beside a
    // whole publication of another process (the dead server's, copied).
    let holder = host.reserve(&["--device", "sim:4", "--visible-cores", "0-1"], &[]);
    plant(&host, 0, b"{\"pid\": 1, \"cores\": [");
    plant(&host, 1, &std::fs::read(&publication).expect("readable"));

    let top = host.run(&["top", "--once", "--device", "sim:4", "--interval", "0.2"], &[]);
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success(), "{}", String::from_utf8_lossy(&top.stderr));
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("nc")).collect();
    assert!(rows[2].contains("  -  "), "the killed server's core is free: {text}");
    assert!(
        text.contains(&format!("{}", holder.pid())) && text.contains("(unreadable: publication beside core 0"),
        "{text}"
    );
    assert!(!text.contains("tick"), "nothing of the dead server is trusted: {text}");

    let monitor = host.run(&["monitor", "--device", "sim:4", "--period", "0.2", "--count", "1"], &[]);
    assert!(monitor.status.success(), "{}", String::from_utf8_lossy(&monitor.stderr));
    let report: Value = serde_json::from_slice(&monitor.stdout).expect("JSON");
    let schema = schema();
    assert!(violations(&schema, &schema, &report, "$").is_empty());
    let runtimes = report["neuron_runtime_data"].as_array().expect("list");
    assert_eq!(runtimes.len(), 1, "{report:#}");
    assert_eq!(runtimes[0]["pid"], holder.pid());
    assert!(runtimes[0]["error"].as_str().expect("error").contains("hash does not match"), "{report:#}");

    let ls = host.ls("sim:4");
    assert_eq!(ls["cores"][2]["held"], false);
    assert_eq!(ls["cores"][0]["owner"]["pid"], holder.pid());
}

/// Replaces what changes from run to run (pids, the period, host figures, column padding).
fn redact_top(text: &str, pids: &[u32]) -> String {
    let mut text = text.replace(env!("CARGO_BIN_EXE_corral"), "corral");
    for pid in pids {
        text = text.replace(&pid.to_string(), "<pid>");
    }
    let lines = text.lines().map(|line| {
        if line.starts_with("vCPU") {
            return "vCPU <host>".to_owned();
        }
        let line = match line.find(", over ") {
            Some(at) => format!("{}, over <s>,{}", &line[..at], &line[at..].split_once("s,").map_or("", |(_, r)| r)),
            None => line.to_owned(),
        };
        line.split("  ").filter(|c| !c.is_empty()).map(str::trim).collect::<Vec<_>>().join("  ")
    });
    lines.collect::<Vec<_>>().join("\n") + "\n"
}

#[test]
fn top_once_prints_one_frame() {
    let host = Host::new();
    let repo = tempfile::tempdir().expect("dir");
    put_sim(repo.path(), "tick", 2);
    let holder = host.reserve(&["--device", "sim:4", "--visible-cores", "0"], &[]);
    let server = Server::start_with(&host, repo.path(), &["--device", "sim:4", "--visible-cores", "2-3"], &[]);
    server.wait_ready();
    let output = host.run(&["top", "--once", "--device", "sim:4", "--interval", "0.3"], &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    expect_test::expect![[r#"
        corral top: sim:4, 4 cores, over <s>, processes: all, sort: core

        CORE  OWNER  INSTANCES  UTIL  EXEC/S  SWITCH/S
        nc0  <pid> corral reserve --json -…  -  ··········  0%  0.0  0.0
        nc1  -  -  ··········  0%  0.0  0.0
        nc2  <pid> corral serve --model-re…  tick@1[0]  ··········  0%  0.0  0.0
        nc3  <pid> corral serve --model-re…  -  ··········  0%  0.0  0.0

        PID  COMMAND  MODEL  ENGINE  REQ/S  P50  P99  FAIL/S  QUEUE
        <pid>  corral serve --model-re…  tick@1  sim  0.0  -  -  0.0  0

        vCPU <host>
    "#]]
    .assert_eq(&redact_top(&String::from_utf8_lossy(&output.stdout), &[holder.pid(), server.child.id()]));
}

/// A private tmux server, killed when dropped.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux").arg("-S").arg(&self.socket).args(args).output().expect("tmux runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "the screen never showed {what}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[test]
fn top_in_a_terminal_shows_owners_models_and_load_and_restores_the_terminal_on_q() {
    let host = Host::new();
    let repo = tempfile::tempdir().expect("dir");
    put_sim(repo.path(), "tick", 2);
    let server = Server::start_with(&host, repo.path(), &["--device", "sim:4", "--visible-cores", "3"], &[]);
    server.wait_ready();
    let bench = busy_bench(&host);
    let tmux = Tmux { socket: host.dir.path().join("tmux.sock") };
    let script = format!(
        "CORRAL_LOCK_DIR={} {} top --device sim:4 --interval 0.5; echo top exited $?; sleep 60",
        host.dir.path().display(),
        env!("CARGO_BIN_EXE_corral"),
    );
    tmux.run(&["new-session", "-d", "-s", "top", "-x", "160", "-y", "40", &script]);
    let row = |screen: &str, core: &str| {
        screen.lines().find(|l| l.trim_start().starts_with(core)).map(str::to_owned).unwrap_or_default()
    };
    let screen = tmux.wait_for("the busy core", |s| {
        let busy = row(s, "nc0");
        busy.contains("tick[0]") && !busy.contains(" 0%")
    });
    let busy = row(&screen, "nc0");
    assert!(busy.contains(&bench.id().to_string()), "nc0's owner is the bench: {screen}");
    let idle = row(&screen, "nc3");
    // The server names version 1 of `tick` `tick@1`.
    assert!(idle.contains(&server.child.id().to_string()) && idle.contains("tick@1[0]"), "{screen}");
    assert!(idle.contains("··········   0%"), "the server's core is idle: {screen}");
    assert!(row(&screen, "nc1").contains(" -  "), "nc1 is free: {screen}");
    assert_eq!(tmux.run(&["display-message", "-p", "-t", "top", "#{alternate_on}"]).trim(), "1");

    // tab narrows to one process, then the next.
    tmux.run(&["send-keys", "-t", "top", "Tab"]);
    tmux.wait_for("the filter", |s| s.contains("processes: pid "));

    tmux.run(&["send-keys", "-t", "top", "q"]);
    let screen = tmux.wait_for("top's exit", |s| s.contains("top exited"));
    assert!(screen.contains("top exited 0"), "{screen}");
    assert!(!screen.contains("CORE"), "the alternate screen is gone: {screen}");
    assert_eq!(tmux.run(&["display-message", "-p", "-t", "top", "#{alternate_on}"]).trim(), "0");
    assert_eq!(tmux.run(&["display-message", "-p", "-t", "top", "#{cursor_flag}"]).trim(), "1", "the cursor shows");
    drop(bench);
}

#[test]
fn top_ends_when_its_terminal_hangs_up_or_it_is_terminated() {
    // Regression: with its terminal gone, crossterm's reader spun on end-of-file inside top's
    // loop, so top kept one CPU busy and ignored SIGHUP and SIGTERM.
    let host = Host::new();
    for ending in ["hang-up", "SIGTERM"] {
        let tmux = Tmux { socket: host.dir.path().join(format!("tmux-{ending}.sock")) };
        let script = format!(
            "exec env CORRAL_LOCK_DIR={} {} top --device sim:4 --interval 0.5",
            host.dir.path().display(),
            env!("CARGO_BIN_EXE_corral"),
        );
        tmux.run(&["new-session", "-d", "-s", "top", "-x", "120", "-y", "30", &script]);
        tmux.wait_for("top's first frame", |s| s.contains("corral top: sim:4"));
        let pid: i32 = tmux.run(&["display-message", "-p", "-t", "top", "#{pane_pid}"]).trim().parse().expect("pid");
        match ending {
            "hang-up" => drop(tmux),
            _ => nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)
                .expect("signal"),
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // Gone, or a zombie waiting for tmux (state Z), once it has exited.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
        };
        while alive() {
            if Instant::now() > deadline {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                panic!("top still ran 10 s after its {ending}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
