//! `corral monitor`: one JSON report per period on stdout, one line each, in the shape
//! neuron-monitor's user guide documents (aws-neuron-sdk
//! `tools/neuron-sys-tools/neuron-monitor-user-guide.rst`, Neuron 2.30), so a program written
//! against neuron-monitor's output (its Prometheus and CloudWatch companions, jq scripts) reads
//! corral's cores unchanged. Every documented field of the groups asked for is present;
//! `schemas/monitor-report.json` requires each of them and refuses any other, except corral's
//! own, which start with `corral_` (per core: executions, switches, model; per process:
//! `corral_models`; per loaded instance: `corral_instance`).
//!
//! Where neuron-monitor and corral differ, these are the choices:
//! - A runtime is a process holding cores and publishing counters (see `corral_cores::live`);
//!   its tag is `CORRAL_PROCESS_TAG` or `NEURON_PROCESS_TAG`, else its pid. A config's
//!   `tag_filter` is a regular expression that must match the whole tag; the first
//!   `neuron_runtimes` entry that matches decides the process's metric groups. Per-metric
//!   `period`s are accepted and ignored: every group is reported every period.
//! - Core keys (`neuroncores_in_use`, `neuroncore_memory_usage`, `neuroncore_index`) are
//!   device-global indices; `neuroncore_utilization` is a percentage (0 to 100) of the period.
//! - Latencies are in seconds, the upper bound of a histogram bucket (about 9% wide), of the
//!   busiest model of the process: `total_latency` is the whole call, `device_latency` the
//!   engine's execution. In a period where no call completed both are `null`, as the guide
//!   says of a period without executions.
//! - Outcomes: `completed` counts successful calls; `incorrect_input` counts calls refused
//!   because their inputs did not match the model's, which `error_summary` counts as `model`
//!   (the guide's "model-related errors"; it maps no outcome to a type); every other failure is
//!   `completed_with_err` and `generic` (corral does not tell numerical errors, timeouts or
//!   full queues apart here). So `error_summary` sums to the failed outcomes.
//! - What no CPU or simulated core can know is the documented zero: `flops`, every
//!   `neuron_device` byte count and `neuroncore_memory_usage` figure, the subgraphs' memory,
//!   the ECC counters of `neuron_hw_counters`, `neuron_device_memory_size`;
//!   `neuron_device_version` and `neuroncore_version` are `""`. `neuron_runtime_used_bytes.host`
//!   is the process's resident memory, all of it `application_memory` (`constants`,
//!   `dma_buffers` and `tensors` are 0).
//! - `neuron_hardware_info.neuron_device_type` names the corral device (`cpu`, `sim:4`,
//!   `sim:inf1.6xlarge`). A `sim:<instance type>` has that instance's devices (4 cores each
//!   on inf1, 2 on inf2 and trn1, 4 on trn2, whose 64 cores are trn2.48xlarge's at logical
//!   NeuronCore config 2); `cpu` and `sim:N` are one device of all their cores.
//!   `logical_neuroncore_config` is 2 on trn2, else 1. No core reports `v3d`.
//! - `instance_info`: `instance_name` is the host name, `instance_type` the device, the other
//!   fields `""` (corral asks no cloud metadata service).
//! - `loaded_models` has an entry per instance of a model (`corral_instance`), with a subgraph
//!   `sg_00`, `sg_01`, ... per core; `uuid` is 32 hex digits made of the pid, the load's id and
//!   the instance; `is_running` is true while the instance has calls queued or executing.
//! - `vcpu_usage.context_switch_count` is the host's context switches during the period
//!   (`ctxt` of `/proc/stat`). `neuron_k8s_info` (off by default in neuron-monitor) is never
//!   written.

use std::{io::Write, path::Path, time::Duration};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use corral_view::{CpuUsage, Percentiles, ProcessView, Snapshot, View};

use crate::{cli::MonitorArgs, settings::take_settings};

const RUNTIME_METRICS: [&str; 4] =
    ["neuroncore_counters", "execution_stats", "memory_used", "neuron_runtime_vcpu_usage"];
const SYSTEM_METRICS: [&str; 3] = ["vcpu_usage", "memory_info", "neuron_hw_counters"];

/// neuron-monitor's configuration file, the parts corral reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    period: Option<String>,
    #[serde(default)]
    neuron_runtimes: Option<Vec<RuntimeEntry>>,
    #[serde(default)]
    system_metrics: Option<Vec<Metric>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeEntry {
    tag_filter: Option<String>,
    #[serde(default)]
    metrics: Vec<Metric>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metric {
    #[serde(rename = "type")]
    kind: String,
    #[allow(dead_code)] // accepted for neuron-monitor's files; every group reports every period
    period: Option<String>,
}

/// What to report, resolved from the flags and the config file.
#[derive(Debug)]
pub struct Config {
    pub period: Duration,
    runtimes: Vec<(regex::Regex, Vec<String>)>,
    system: Vec<String>,
}

impl Config {
    /// Everything, for every process, every 5 s (neuron-monitor's default).
    fn everything(period: Duration) -> Config {
        let all = regex::Regex::new(".*").expect("valid");
        Config {
            period,
            runtimes: vec![(all, RUNTIME_METRICS.map(str::to_owned).to_vec())],
            system: SYSTEM_METRICS.map(str::to_owned).to_vec(),
        }
    }

    fn read(path: &Path, period_flag: Option<Duration>) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file: ConfigFile = serde_json::from_str(&text).map_err(|error| {
            anyhow::anyhow!(
                "{} is not a monitor configuration: {error}\nhint: write neuron-monitor's format: {{\"period\": \"1s\", \"neuron_runtimes\": [{{\"tag_filter\": \".*\", \"metrics\": [{{\"type\": \"neuroncore_counters\"}}]}}]}}",
                path.display()
            )
        })?;
        let period = match (period_flag, &file.period) {
            (Some(period), _) => period,
            (None, Some(text)) => parse_period(text).with_context(|| format!("{}: `period`", path.display()))?,
            (None, None) => DEFAULT_PERIOD,
        };
        let mut config = Config::everything(period);
        if let Some(entries) = file.neuron_runtimes {
            config.runtimes.clear();
            for entry in entries {
                let filter = entry.tag_filter.as_deref().unwrap_or(".*");
                let regex = regex::Regex::new(&format!("^(?:{filter})$")).map_err(|error| {
                    anyhow::anyhow!("{}: tag_filter `{filter}` is not a regular expression: {error}", path.display())
                })?;
                let kinds = checked(&entry.metrics, &RUNTIME_METRICS, path)?;
                config.runtimes.push((regex, kinds));
            }
        }
        if let Some(metrics) = file.system_metrics {
            config.system = checked(&metrics, &SYSTEM_METRICS, path)?;
        }
        Ok(config)
    }

    /// The metric groups for a process tagged `tag`, if any entry takes it.
    fn groups_for(&self, tag: &str) -> Option<&[String]> {
        self.runtimes.iter().find(|(filter, _)| filter.is_match(tag)).map(|(_, kinds)| &kinds[..])
    }
}

const DEFAULT_PERIOD: Duration = Duration::from_secs(5);

fn checked(metrics: &[Metric], known: &[&str], path: &Path) -> anyhow::Result<Vec<String>> {
    metrics
        .iter()
        .map(|m| {
            if known.contains(&m.kind.as_str()) {
                Ok(m.kind.clone())
            } else {
                bail!("{}: unknown metric type `{}`\nhint: use one of {}", path.display(), m.kind, known.join(", "))
            }
        })
        .collect()
}

/// `1s`, `500ms`, `2m`, or plain seconds.
pub fn parse_period(text: &str) -> anyhow::Result<Duration> {
    let period = match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs),
        Ok(_) => bail!("`{text}` is not a positive number of seconds"),
        Err(_) => humantime::parse_duration(text.trim())
            .map_err(|error| anyhow::anyhow!("`{text}` is not a period ({error}); write e.g. 1s, 500ms or 0.5"))?,
    };
    if period < Duration::from_millis(100) {
        bail!("a period of `{text}` is shorter than 100ms, more often than processes publish (every 200ms)");
    }
    Ok(period)
}

pub fn run(args: &MonitorArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    let period_flag = args.period.as_deref().map(parse_period).transpose().context("--period")?;
    let config = match &args.config_file {
        Some(path) => Config::read(path, period_flag)?,
        None => Config::everything(period_flag.unwrap_or(DEFAULT_PERIOD)),
    };
    let registry = take_settings(&args.device, None).open_registry(lookup)?;
    let hardware = Hardware::of(registry.device().spec(), registry.device().len());
    let mut before = Snapshot::take(&registry).context("cannot read the registry")?;
    let mut printed = 0;
    loop {
        std::thread::sleep(config.period.saturating_sub(before.at.elapsed()));
        let after = Snapshot::take(&registry).context("cannot read the registry")?;
        let view = View::between(&before, &after);
        let mut line = serde_json::to_string(&report(&view, &config, &hardware)).expect("a report always serializes");
        line.push('\n');
        let mut stdout = std::io::stdout().lock();
        if stdout.write_all(line.as_bytes()).and_then(|()| stdout.flush()).is_err() {
            return Ok(()); // the reader went away (a closed pipe): nothing left to do
        }
        printed += 1;
        if args.count.is_some_and(|count| printed >= count) {
            return Ok(());
        }
        before = after;
    }
}

/// The report's constant parts, resolved once from the device.
pub struct Hardware {
    /// `neuron_hardware_info`.
    info: Value,
    /// The device's name (`instance_info.instance_type`).
    device: String,
    devices: usize,
    cores_per_device: usize,
}

impl Hardware {
    /// neuron-monitor's `neuron_hardware_info` for `device` of `cores` cores: Inferentia
    /// chips hold 4 cores (inf1) or 2 (inf2, and trn1's Trainium); trn2's Trainium2 holds 8,
    /// shown as 4 at its default logical NeuronCore config of 2 (the guide's trn2.48xlarge
    /// example: 16 devices of 4); `sim:N` and `cpu` count as one device of all their cores.
    fn of(device: &corral_cores::DeviceSpec, cores: usize) -> Hardware {
        let instance_type = match device {
            corral_cores::DeviceSpec::Sim { name, .. } => name.as_str(),
            corral_cores::DeviceSpec::Cpu { .. } => "",
        };
        let family = instance_type.split('.').next().unwrap_or_default();
        let (cores_per_device, logical_config) = match family {
            "inf1" => (4, 1),
            "inf2" | "trn1" => (2, 1),
            "trn2" => (4, 2),
            _ => (cores.max(1), 1),
        };
        let devices = cores.div_ceil(cores_per_device).max(1);
        let info = json!({
            "neuron_device_type": device.to_string(),
            "neuron_device_version": "",
            "neuroncore_version": "",
            "neuron_device_count": devices,
            "neuron_device_memory_size": 0,
            "neuroncore_per_device_count": cores_per_device,
            "logical_neuroncore_config": logical_config,
            "error": "",
        });
        Hardware { info, device: device.to_string(), devices, cores_per_device }
    }
}

/// One report of `view`.
pub fn report(view: &View, config: &Config, hardware: &Hardware) -> Value {
    let period = view.period.as_secs_f64();
    let runtimes: Vec<Value> = view
        .processes
        .iter()
        .filter(|p| p.unreadable.is_some() || !p.models.is_empty() || p.tag.is_some())
        .filter_map(|process| {
            let tag = process.tag.clone().unwrap_or_else(|| process.pid.to_string());
            let groups = config.groups_for(&tag)?;
            Some(runtime_report(view, process, &tag, groups, period, hardware))
        })
        .collect();
    let mut system = serde_json::Map::new();
    for group in &config.system {
        let value = match group.as_str() {
            "vcpu_usage" => {
                let usage_data: serde_json::Map<String, Value> =
                    view.cpu.iter().skip(1).enumerate().map(|(i, u)| (i.to_string(), cpu_json(u))).collect();
                json!({
                    "period": period,
                    "average_usage": cpu_json(&view.cpu.first().copied().unwrap_or_default()),
                    "usage_data": usage_data,
                    "context_switch_count": view.context_switches,
                    "error": "",
                })
            }
            "memory_info" => {
                let m = view.memory;
                json!({
                    "period": period,
                    "memory_total_bytes": m.total,
                    "memory_used_bytes": m.used,
                    "swap_total_bytes": m.swap_total,
                    "swap_used_bytes": m.swap_used,
                    "error": "",
                })
            }
            _ => {
                // No ECC on a CPU: every device reports zero events.
                let devices: Vec<Value> = (0..hardware.devices)
                    .map(|index| {
                        json!({
                            "neuron_device_index": index,
                            "mem_ecc_corrected": 0,
                            "mem_ecc_uncorrected": 0,
                            "sram_ecc_corrected": 0,
                            "sram_ecc_uncorrected": 0,
                        })
                    })
                    .collect();
                json!({ "period": period, "neuron_devices": devices, "error": "" })
            }
        };
        system.insert(group.clone(), value);
    }
    json!({
        "neuron_runtime_data": runtimes,
        "system_data": system,
        "instance_info": {
            "instance_name": hostname(),
            "instance_id": "",
            "instance_type": hardware.device,
            "instance_availability_zone": "",
            "instance_availability_zone_id": "",
            "instance_region": "",
            "ami_id": "",
            "subnet_id": "",
            "error": "",
        },
        "neuron_hardware_info": hardware.info,
    })
}

fn runtime_report(
    view: &View,
    process: &ProcessView,
    tag: &str,
    groups: &[String],
    period: f64,
    hardware: &Hardware,
) -> Value {
    let error = process.unreadable.clone().unwrap_or_default();
    let report: serde_json::Map<String, Value> = groups
        .iter()
        .map(|group| {
            let mut value = match group.as_str() {
                "neuroncore_counters" => neuroncore_counters(view, process),
                "execution_stats" => execution_stats(process),
                "memory_used" => memory_used(process, hardware),
                _ => {
                    let (user, system) = process.cpu_percent;
                    json!({ "vcpu_usage": { "user": user, "system": system } })
                }
            };
            value["period"] = json!(period);
            value["error"] = json!(error);
            (group.clone(), value)
        })
        .collect();
    json!({
        "pid": process.pid,
        "address": "",
        "neuron_runtime_tag": tag,
        "error": error,
        "report": report,
    })
}

/// `neuroncore_counters` without its envelope: every core the process holds.
fn neuroncore_counters(view: &View, process: &ProcessView) -> Value {
    let in_use: serde_json::Map<String, Value> = view
        .cores
        .iter()
        .filter(|c| process.cores.contains(&c.index))
        .map(|c| {
            let counters = json!({
                "neuroncore_utilization": c.utilization * 100.0,
                "flops": 0,
                "corral_executions": c.executions,
                "corral_switches": c.switches,
                "corral_model": c.model,
            });
            (c.index.to_string(), counters)
        })
        .collect();
    json!({ "neuroncores_in_use": in_use })
}

/// `execution_stats` without its envelope.
fn execution_stats(process: &ProcessView) -> Value {
    let completed: u64 = process.models.iter().map(|m| m.completed).sum();
    let bad_input: u64 = process.models.iter().map(|m| m.failed_input).sum();
    let other: u64 = process.models.iter().map(|m| m.failed - m.failed_input).sum();
    // Across models: the busiest model's percentiles stand for the process.
    let busiest = process.models.iter().max_by_key(|m| m.completed).filter(|m| m.completed > 0);
    json!({
        // neuron-monitor user guide, execution_stats: error counts by type, outcome counts.
        "error_summary": { "generic": other, "numerical": 0, "transient": 0, "model": bad_input, "runtime": 0, "hardware": 0 },
        "execution_summary": {
            "completed": completed,
            "completed_with_err": other,
            "completed_with_num_err": 0,
            "timed_out": 0,
            "incorrect_input": bad_input,
            "failed_to_queue": 0,
        },
        "latency_stats": {
            "total_latency": latency_json(busiest.map(|m| &m.latency)),
            "device_latency": latency_json(busiest.map(|m| &m.compute)),
        },
        "corral_models": process.models.iter().map(|m| json!({
            "name": m.name,
            "completed": m.completed,
            "completed_with_err": m.failed - m.failed_input,
            "incorrect_input": m.failed_input,
            "queue_depth": m.queue_depth,
            "total_latency": latency_json(Some(&m.latency)),
            "instances": m.instances,
            "autopilot_moves": m.moves,
        })).collect::<Vec<_>>(),
    })
}

/// `memory_used` without its envelope: the process's resident memory, and a subgraph per
/// core of each instance (no device memory on a CPU).
fn memory_used(process: &ProcessView, hardware: &Hardware) -> Value {
    let loaded: Vec<Value> = process
        .models
        .iter()
        .flat_map(|m| {
            m.instances.iter().enumerate().map(move |(instance, cores)| {
                let cores: Vec<usize> =
                    corral_cores::parse_core_list(cores).map(|s| s.iter().collect()).unwrap_or_default();
                let subgraphs: serde_json::Map<String, Value> = cores
                    .iter()
                    .enumerate()
                    .map(|(i, &core)| {
                        let subgraph = json!({
                            "memory_used_bytes": {
                                "host": 0,
                                "neuron_device": 0,
                                "usage_breakdown": {
                                    "host": host_breakdown(0),
                                    "neuron_device": { "constants": 0, "model_code": 0, "runtime_memory": 0, "tensors": 0 },
                                },
                            },
                            "neuroncore_index": core,
                            "neuron_device_index": core / hardware.cores_per_device,
                        });
                        (format!("sg_{i:02}"), subgraph)
                    })
                    .collect();
                json!({
                    "name": m.name,
                    "uuid": format!("{:08x}{:016x}{:08x}", process.pid, m.id, instance),
                    "model_id": m.id,
                    "corral_instance": instance,
                    "is_running": m.queue_depth.get(instance).is_some_and(|&d| d > 0),
                    "subgraphs": subgraphs,
                })
            })
        })
        .collect();
    let per_core: serde_json::Map<String, Value> = process
        .cores
        .iter()
        .map(|core| {
            let usage = json!({ "constants": 0, "model_code": 0, "model_shared_scratchpad": 0, "runtime_memory": 0, "tensors": 0 });
            (core.to_string(), usage)
        })
        .collect();
    let host = resident_bytes(process.pid);
    json!({
        "neuron_runtime_used_bytes": {
            "host": host,
            "neuron_device": 0,
            "usage_breakdown": { "host": host_breakdown(host), "neuroncore_memory_usage": per_core },
        },
        "loaded_models": loaded,
    })
}

/// The guide's host breakdown: everything corral can see is `application_memory`.
fn host_breakdown(bytes: u64) -> Value {
    json!({ "application_memory": bytes, "constants": 0, "dma_buffers": 0, "tensors": 0 })
}

/// `null` when no call completed in the period (neuron-monitor user guide, `latency_stats`:
/// "If there are no models being executed during this time, the two objects will be null").
fn latency_json(p: Option<&Percentiles>) -> Value {
    match p {
        Some(p) if !p.is_empty() => {
            json!({ "p0": p.p0, "p1": p.p1, "p25": p.p25, "p50": p.p50, "p75": p.p75, "p99": p.p99, "p100": p.p100 })
        }
        _ => Value::Null,
    }
}

fn cpu_json(u: &CpuUsage) -> Value {
    serde_json::to_value(u).expect("numbers serialize")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

/// Resident memory of `pid`, bytes (0 when unknown).
fn resident_bytes(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf reads a constant of the C library.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64
}
