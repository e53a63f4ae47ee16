//! `corral ls`: each core of a device and its owner, as a table or JSON. Reads the registry
//! without taking any lock, so it never disturbs an allocation. Beside the device it shows
//! the CPU quota of the cgroup `ls` runs in (a `kubectl exec` shares the pod's), and how many
//! cores a corral process there takes by default.
//!
//! `corral ray-resources` lives here too: what a Ray node should declare so that Ray hands
//! out exactly the cores corral will own (`ray start --resources "$(corral ray-resources)"`).

use std::{io::Write, time::SystemTime};

use anyhow::Context;
use corral_cores::{CoreStatus, Device, Owner, format_cpu_list, format_cpus};
use serde::Serialize;

use crate::{
    cli::{LsArgs, RayResourcesArgs},
    settings::take_settings,
};

pub fn run(args: &LsArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    let registry = take_settings(&args.device, None).open_registry(lookup)?;
    let status = registry.status().context("cannot read the registry")?;
    let device = registry.device().spec().to_string();
    let text = if args.json {
        let listing = Listing {
            device: &device,
            registry: &registry.path().display().to_string(),
            quota_cpus: registry.device().quota().map(|quota| quota.cpus()),
            cores: status.iter().map(JsonCore::from).collect(),
        };
        serde_json::to_string_pretty(&listing).expect("a listing always serializes") + "\n"
    } else {
        table(&device_title(registry.device()), &status)
    };
    std::io::stdout().lock().write_all(text.as_bytes()).context("cannot write to stdout")
}

/// Prints `{"neuron_cores": N}`, N the device's cores: Ray then hands each task and actor
/// core IDs of that device in `NEURON_RT_VISIBLE_CORES`, which corral takes as global indices.
pub fn ray_resources(args: &RayResourcesArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    let device = take_settings(&args.device, None).open_device(lookup)?;
    let line = serde_json::json!({ "neuron_cores": device.len() }).to_string() + "\n";
    std::io::stdout().lock().write_all(line.as_bytes()).context("cannot write to stdout")
}

/// The device's name, and its CPU quota when it has one:
/// `cpu (CPU quota 1.5: 1 core by default)`.
fn device_title(device: &Device) -> String {
    let name = device.spec().to_string();
    match (device.quota(), device.quota_cores()) {
        (Some(quota), Some(cap)) => {
            let cores = cap.min(device.takeable().map_or(0, |set| set.len()));
            let noun = if cores == 1 { "core" } else { "cores" };
            format!("{name} (CPU quota {}: {cores} {noun} by default)", format_cpus(quota.cpus()))
        }
        _ => name,
    }
}

#[derive(Serialize)]
struct Listing<'a> {
    device: &'a str,
    registry: &'a str,
    /// The CFS quota of `ls`'s cgroup in CPUs (1.5), null when none.
    quota_cpus: Option<f64>,
    cores: Vec<JsonCore>,
}

#[derive(Serialize)]
struct JsonCore {
    index: usize,
    cpus: Vec<usize>,
    /// The (first) owner, or null when free.
    owner: Option<JsonOwner>,
    /// Every owner: more than one when `cpu:logical` processes hold different SMT siblings.
    owners: Vec<JsonOwner>,
    /// True when held, even by a process corral cannot identify.
    held: bool,
}

#[derive(Clone, Serialize)]
struct JsonOwner {
    pid: u32,
    command: String,
    /// RFC 3339, UTC; null when the holder wrote no record.
    since: Option<String>,
    /// Every instance the holder placed, with its global cores.
    models: Vec<JsonInstance>,
}

#[derive(Clone, Serialize)]
struct JsonInstance {
    name: String,
    instance: usize,
    cores: Vec<usize>,
    /// The model's engine (null when its holder published none).
    engine: Option<String>,
    /// Why, when it was chosen by measuring (`auto`).
    engine_reason: Option<String>,
    /// Each timed engine's median at batch 1, in microseconds.
    engine_medians_us: std::collections::BTreeMap<String, u64>,
}

impl From<&CoreStatus> for JsonCore {
    fn from(core: &CoreStatus) -> JsonCore {
        let owners: Vec<JsonOwner> = core.owners.iter().map(JsonOwner::from).collect();
        JsonCore {
            index: core.index,
            cpus: core.cpus.clone(),
            owner: owners.first().cloned(),
            owners,
            held: !core.is_free(),
        }
    }
}

impl From<&Owner> for JsonOwner {
    fn from(owner: &Owner) -> JsonOwner {
        JsonOwner {
            pid: owner.pid,
            command: owner.command.clone(),
            since: owner.since.map(rfc3339),
            models: owner
                .instances
                .iter()
                .map(|i| {
                    let engine = owner.engines.get(&i.name).cloned().unwrap_or_default();
                    JsonInstance {
                        name: i.name.clone(),
                        instance: i.instance,
                        cores: i.cores.clone(),
                        engine: Some(engine.engine).filter(|e| !e.is_empty()),
                        engine_reason: engine.reason,
                        engine_medians_us: engine.medians_us,
                    }
                })
                .collect(),
        }
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The human table: one row per core.
pub fn table(device: &str, status: &[CoreStatus]) -> String {
    let free = status.iter().filter(|c| c.is_free()).count();
    let show_models = status.iter().any(|c| c.owners.iter().any(|o| !o.models.is_empty()));
    let last_header = if show_models { "MODELS  COMMAND" } else { "COMMAND" };
    let mut rows = vec![["CORE", "CPUS", "PID", "SINCE", last_header].map(str::to_owned)];
    for core in status {
        let cpus = if core.cpus.is_empty() { "-".to_owned() } else { format_cpu_list(&core.cpus) };
        let name = format!("nc{}", core.index);
        match core.owners.as_slice() {
            [] if core.held_unknown => rows.push([name, cpus, "?".into(), "-".into(), "(held, owner unknown)".into()]),
            [] => rows.push([name, cpus, "free".into(), String::new(), String::new()]),
            owners => {
                let pids: Vec<String> = owners.iter().map(|o| o.pid.to_string()).collect();
                let since = owners[0].since.map_or("-".to_owned(), rfc3339);
                let commands: Vec<&str> = owners.iter().map(|o| o.command.as_str()).collect();
                let mut last = commands.join(" | ");
                if show_models {
                    let models: Vec<String> = owners.iter().flat_map(|o| o.models.iter().cloned()).collect();
                    let models = if models.is_empty() { "-".to_owned() } else { models.join(",") };
                    last = format!("{models}  {last}");
                }
                rows.push([name, cpus, pids.join(","), since, last]);
            }
        }
    }
    let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    format!("{device}: {} cores, {free} free\n", status.len()) + &crate::table::render(&rows)
}
