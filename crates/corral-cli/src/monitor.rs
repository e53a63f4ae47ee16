//! `corral monitor`: one JSON report per period on stdout, in neuron-monitor's shape, so the
//! tools that already read neuron-monitor (its Prometheus and CloudWatch companions, jq
//! scripts) read corral's cores too. The report's schema is `schemas/monitor-report.json`.
//!
//! Where neuron-monitor and corral differ, these are the choices:
//! - `neuroncore_utilization` is a percentage (0 to 100) of the period, as neuron-monitor
//!   reports it; core keys are device-global indices.
//! - A runtime is a process holding cores and publishing counters (see
//!   `corral_cores::live`); its tag is `CORRAL_PROCESS_TAG` or `NEURON_PROCESS_TAG`, else
//!   its pid. A config's `tag_filter` is a regular expression that must match the whole tag;
//!   the first `neuron_runtimes` entry that matches decides the process's metric groups.
//! - Latencies are in seconds, the upper bound of a histogram bucket (about 9% wide).
//!   `total_latency` is the whole call, `device_latency` the engine's execution.
//! - `execution_summary.completed` counts successful calls; every failed call counts in
//!   `completed_with_err` (corral does not tell numerical errors or timeouts apart there).
//! - corral's own fields start with `corral_` (per core: executions, switches, model).
//! - Per-metric `period`s in a config are accepted and ignored: every group is reported
//!   every period.

use std::{io::Write, path::Path, time::Duration};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    cli::MonitorArgs,
    live::{CpuUsage, Percentiles, ProcessView, Snapshot, View},
    settings::take_settings,
};

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
    let device = registry.device().spec().clone();
    let hardware = hardware_info(&device, registry.device().len());
    let mut before = Snapshot::take(&registry).context("cannot read the registry")?;
    let mut printed = 0;
    loop {
        std::thread::sleep(config.period.saturating_sub(before.at.elapsed()));
        let after = Snapshot::take(&registry).context("cannot read the registry")?;
        let view = View::between(&before, &after);
        let mut line = serde_json::to_string(&report(&view, &config, &device.to_string(), &hardware))
            .expect("a report always serializes");
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

/// neuron-monitor's `neuron_hardware_info`: Inferentia chips hold 4 cores (inf1) or 2
/// (inf2, trn1); `sim:N` and `cpu` count as one device of all their cores.
fn hardware_info(device: &corral_cores::DeviceSpec, cores: usize) -> Value {
    let per_device = match device {
        corral_cores::DeviceSpec::Sim { name, .. } if name.starts_with("inf1") => 4,
        corral_cores::DeviceSpec::Sim { name, .. } if name.starts_with("inf2") || name.starts_with("trn") => 2,
        _ => cores.max(1),
    };
    json!({
        "neuron_device_count": cores.div_ceil(per_device),
        "neuroncore_per_device_count": per_device,
        "error": "",
    })
}

/// One report of `view`.
pub fn report(view: &View, config: &Config, device: &str, hardware: &Value) -> Value {
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
        match group.as_str() {
            "vcpu_usage" => {
                let usage_data: serde_json::Map<String, Value> =
                    view.cpu.iter().skip(1).enumerate().map(|(i, u)| (i.to_string(), cpu_json(u))).collect();
                system.insert(
                    group.clone(),
                    json!({
                        "period": period,
                        "average_usage": cpu_json(&view.cpu.first().copied().unwrap_or_default()),
                        "usage_data": usage_data,
                        "error": "",
                    }),
                );
            }
            "memory_info" => {
                let m = view.memory;
                system.insert(
                    group.clone(),
                    json!({
                        "period": period,
                        "memory_total_bytes": m.total,
                        "memory_used_bytes": m.used,
                        "swap_total_bytes": m.swap_total,
                        "swap_used_bytes": m.swap_used,
                        "error": "",
                    }),
                );
            }
            _ => {
                system.insert(group.clone(), json!({ "period": period, "error": "corral has no hardware counters" }));
            }
        }
    }
    json!({
        "neuron_runtime_data": runtimes,
        "system_data": system,
        "instance_info": {
            "instance_name": hostname(),
            "instance_id": "",
            "instance_type": device,
            "instance_availability_zone": "",
            "instance_availability_zone_id": "",
            "instance_region": "",
            "ami_id": "",
            "subnet_id": "",
            "error": "",
        },
        "neuron_hardware_info": hardware,
    })
}

fn runtime_report(
    view: &View,
    process: &ProcessView,
    tag: &str,
    groups: &[String],
    period: f64,
    hardware: &Value,
) -> Value {
    let mut report = serde_json::Map::new();
    let error = process.unreadable.clone().unwrap_or_default();
    let per_device = hardware["neuroncore_per_device_count"].as_u64().unwrap_or(1).max(1) as usize;
    for group in groups {
        let value = match group.as_str() {
            "neuroncore_counters" => {
                let in_use: serde_json::Map<String, Value> = view
                    .cores
                    .iter()
                    .filter(|c| process.cores.contains(&c.index))
                    .map(|c| {
                        let counters = json!({
                            "neuroncore_utilization": c.utilization * 100.0,
                            "corral_executions": c.executions,
                            "corral_switches": c.switches,
                            "corral_model": c.model,
                        });
                        (c.index.to_string(), counters)
                    })
                    .collect();
                json!({ "period": period, "neuroncores_in_use": in_use, "error": error })
            }
            "execution_stats" => {
                let completed: u64 = process.models.iter().map(|m| m.completed).sum();
                let failed: u64 = process.models.iter().map(|m| m.failed).sum();
                let merged = |pick: fn(&crate::live::ModelView) -> &Percentiles| {
                    // Across models: the busiest model's percentiles stand for the process.
                    let busiest = process.models.iter().max_by_key(|m| m.completed).filter(|m| m.completed > 0);
                    latency_json(busiest.map(pick))
                };
                json!({
                    "period": period,
                    "error_summary": { "generic": failed, "numerical": 0, "transient": 0, "model": 0, "runtime": 0, "hardware": 0 },
                    "execution_summary": {
                        "completed": completed,
                        "completed_with_err": failed,
                        "completed_with_num_err": 0,
                        "timed_out": 0,
                        "incorrect_input": 0,
                        "failed_to_queue": 0,
                    },
                    "latency_stats": {
                        "total_latency": merged(|m| &m.latency),
                        "device_latency": merged(|m| &m.compute),
                    },
                    "corral_models": process.models.iter().map(|m| json!({
                        "name": m.name,
                        "completed": m.completed,
                        "completed_with_err": m.failed,
                        "queue_depth": m.queue_depth,
                        "total_latency": latency_json(Some(&m.latency)),
                    })).collect::<Vec<_>>(),
                    "error": error,
                })
            }
            "memory_used" => {
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
                                .map(|(i, &core): (usize, &usize)| {
                                    let sg = json!({
                                        "neuroncore_index": core,
                                        "neuron_device_index": core / per_device,
                                        "memory_used_bytes": { "host": 0, "neuron_device": 0 },
                                    });
                                    (format!("sg_{i:02}"), sg)
                                })
                                .collect();
                            json!({
                                "name": m.name,
                                "uuid": format!("{}-{}-{}", process.pid, m.id, instance),
                                "model_id": m.id,
                                "corral_instance": instance,
                                "is_running": m.queue_depth.get(instance).is_some_and(|&d| d > 0),
                                "subgraphs": subgraphs,
                            })
                        })
                    })
                    .collect();
                json!({
                    "period": period,
                    "neuron_runtime_used_bytes": { "host": resident_bytes(process.pid), "neuron_device": 0 },
                    "loaded_models": loaded,
                    "error": error,
                })
            }
            _ => {
                let (user, system) = process.cpu_percent;
                json!({ "period": period, "vcpu_usage": { "user": user, "system": system }, "error": error })
            }
        };
        report.insert(group.clone(), value);
    }
    json!({
        "pid": process.pid,
        "address": "",
        "neuron_runtime_tag": tag,
        "error": error,
        "report": report,
    })
}

fn latency_json(p: Option<&Percentiles>) -> Value {
    let p = p.copied().unwrap_or_default();
    json!({ "p0": p.p0, "p1": p.p1, "p25": p.p25, "p50": p.p50, "p75": p.p75, "p99": p.p99, "p100": p.p100 })
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
