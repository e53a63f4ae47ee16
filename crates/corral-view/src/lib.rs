//! What `corral top` and `corral monitor` show (and, in a crate of its own so that the server
//! can show it too, a dashboard): two [`Snapshot`]s of a device (who holds
//! each core, and each holder's live publication, see `corral_cores::live`) and of the host
//! (`/proc/stat`: CPU times and context switches, `/proc/meminfo`), turned into rates and
//! counts over the time between them ([`View`]).
//!
//! Publications are cumulative; a process is matched between snapshots by pid and start
//! time, and one seen for the first time is measured from zero (it publishes as soon as it
//! starts, so everything it counted happened since). Counters that go backwards (a reload)
//! count as zero, never negative.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

pub use corral_cores::Registry;
use corral_cores::{CoreStatus, LiveEntry, Owner, Publication, latency_bucket_limit};

/// One reading of a device and the host.
pub struct Snapshot {
    pub at: Instant,
    pub status: Vec<CoreStatus>,
    pub entries: Vec<LiveEntry>,
    pub cpu: Vec<CpuTimes>,
    /// Context switches on the host since it booted (`ctxt` of `/proc/stat`).
    pub context_switches: u64,
    pub memory: Memory,
    /// Per holder pid, its user and system CPU time so far (clock ticks).
    process_cpu: BTreeMap<u32, (u64, u64)>,
}

impl Snapshot {
    pub fn take(registry: &Registry) -> Result<Snapshot, corral_cores::RegistryError> {
        let status = registry.status()?;
        let entries = registry.live(&status);
        let pids = status.iter().flat_map(|c| c.owners.iter().map(|o| o.pid));
        let process_cpu = pids.filter_map(|pid| Some((pid, process_ticks(pid)?))).collect();
        let (cpu, context_switches) = proc_stat();
        Ok(Snapshot { at: Instant::now(), status, entries, cpu, context_switches, memory: memory(), process_cpu })
    }

    /// A reading with no device (no registry to read): the host only.
    pub fn empty() -> Snapshot {
        let (cpu, context_switches) = proc_stat();
        Snapshot {
            at: Instant::now(),
            status: Vec::new(),
            entries: Vec::new(),
            cpu,
            context_switches,
            memory: memory(),
            process_cpu: BTreeMap::new(),
        }
    }

    /// The trusted publications, by pid.
    fn publications(&self) -> BTreeMap<u32, &Publication> {
        self.entries.iter().filter_map(|e| e.publication.as_ref().ok().map(|p| (p.pid, p))).collect()
    }
}

/// `/proc/stat` jiffies of one CPU (or, first, of all).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub io_wait: u64,
    pub irq: u64,
    pub soft_irq: u64,
    pub steal: u64,
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.user + self.nice + self.system + self.idle + self.io_wait + self.irq + self.soft_irq + self.steal
    }
}

/// Per field, the percentage of the time between `before` and `after`.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct CpuUsage {
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub idle: f64,
    pub io_wait: f64,
    pub irq: f64,
    pub soft_irq: f64,
}

impl CpuUsage {
    fn between(before: &CpuTimes, after: &CpuTimes) -> CpuUsage {
        let total = after.total().saturating_sub(before.total()).max(1) as f64;
        let pct = |a: u64, b: u64| a.saturating_sub(b) as f64 * 100.0 / total;
        CpuUsage {
            user: pct(after.user, before.user),
            nice: pct(after.nice, before.nice),
            system: pct(after.system, before.system),
            idle: pct(after.idle, before.idle),
            io_wait: pct(after.io_wait, before.io_wait),
            irq: pct(after.irq, before.irq),
            soft_irq: pct(after.soft_irq, before.soft_irq),
        }
    }

    pub fn busy(&self) -> f64 {
        100.0 - self.idle - self.io_wait
    }
}

/// Host memory, bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub total: u64,
    pub used: u64,
    pub swap_total: u64,
    pub swap_used: u64,
}

/// `/proc/stat`: every CPU line (the aggregate first, then each CPU), and `ctxt`, the context
/// switches since boot (0 when unreadable).
fn proc_stat() -> (Vec<CpuTimes>, u64) {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
}

fn parse_proc_stat(text: &str) -> (Vec<CpuTimes>, u64) {
    let context_switches = text
        .lines()
        .find_map(|line| line.strip_prefix("ctxt "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0);
    (cpu_times(text), context_switches)
}

fn cpu_times(proc_stat: &str) -> Vec<CpuTimes> {
    proc_stat
        .lines()
        .filter(|line| line.starts_with("cpu"))
        .map(|line| {
            let v: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            CpuTimes {
                user: at(0),
                nice: at(1),
                system: at(2),
                idle: at(3),
                io_wait: at(4),
                irq: at(5),
                soft_irq: at(6),
                steal: at(7),
            }
        })
        .collect()
}

/// User and system CPU time of `pid`, in ticks.
fn process_ticks(pid: u32) -> Option<(u64, u64)> {
    corral_cores::process_stat(pid).map(|s| (s.user_ticks, s.system_ticks))
}

fn memory() -> Memory {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    let total = field("MemTotal");
    let swap_total = field("SwapTotal");
    Memory {
        total,
        used: total.saturating_sub(field("MemAvailable")),
        swap_total,
        swap_used: swap_total.saturating_sub(field("SwapFree")),
    }
}

/// What happened between two snapshots.
pub struct View {
    pub period: Duration,
    pub cores: Vec<CoreView>,
    pub processes: Vec<ProcessView>,
    /// The aggregate first, then each CPU.
    pub cpu: Vec<CpuUsage>,
    /// Context switches on the host during the period.
    pub context_switches: u64,
    pub memory: Memory,
}

pub struct CoreView {
    pub index: usize,
    pub owners: Vec<Owner>,
    pub held: bool,
    /// `name[replica]` of each instance on the core.
    pub instances: Vec<String>,
    /// Busy fraction of the period, 0 to 1.
    pub utilization: f64,
    pub executions: u64,
    pub switches: u64,
    /// The model that ran on it last.
    pub model: Option<String>,
}

pub struct ProcessView {
    pub pid: u32,
    pub command: String,
    pub tag: Option<String>,
    /// Why its publication could not be read; then it has no models.
    pub unreadable: Option<String>,
    /// Global cores it holds.
    pub cores: Vec<usize>,
    pub models: Vec<ModelView>,
    /// Its CPU use over the period, percent of one CPU: user, system.
    pub cpu_percent: (f64, f64),
}

pub struct ModelView {
    pub name: String,
    pub id: u64,
    /// Per instance, its global cores (`2-3`).
    pub instances: Vec<String>,
    /// Calls completed (successfully) in the period.
    pub completed: u64,
    /// Calls that failed in the period, for any reason.
    pub failed: u64,
    /// The part of `failed` refused for inputs that did not match the model's.
    pub failed_input: u64,
    pub queue_depth: Vec<u64>,
    /// The autopilot's moves of it so far.
    pub moves: corral_cores::Moves,
    /// Whole-call latency of the period's calls.
    pub latency: Percentiles,
    /// Engine time of the period's executions.
    pub compute: Percentiles,
    /// The engine it runs on (empty when its publisher wrote none).
    pub engine: String,
}

/// Seconds; all `None` when no call completed in the period.
#[derive(Clone, Copy, Debug, Default)]
pub struct Percentiles {
    pub p0: Option<f64>,
    pub p1: Option<f64>,
    pub p25: Option<f64>,
    pub p50: Option<f64>,
    pub p75: Option<f64>,
    pub p99: Option<f64>,
    pub p100: Option<f64>,
}

impl Percentiles {
    /// True when no call completed in the period.
    pub fn is_empty(&self) -> bool {
        self.p100.is_none()
    }
}

impl View {
    pub fn between(before: &Snapshot, after: &Snapshot) -> View {
        let period = after.at.saturating_duration_since(before.at).max(Duration::from_millis(1));
        let (old, new) = (before.publications(), after.publications());
        let earlier = |p: &Publication| old.get(&p.pid).copied().filter(|o| o.start_ticks == p.start_ticks);

        let mut cores: Vec<CoreView> = after
            .status
            .iter()
            .map(|c| CoreView {
                index: c.index,
                owners: c.owners.clone(),
                held: !c.is_free(),
                instances: c.owners.iter().flat_map(|o| instances_on(o, c.index)).collect(),
                utilization: 0.0,
                executions: 0,
                switches: 0,
                model: None,
            })
            .collect();
        for publication in new.values() {
            let previous = earlier(publication);
            for core in &publication.cores {
                let Some(view) = cores.get_mut(core.core) else { continue };
                let before = previous.and_then(|p| p.cores.iter().find(|c| c.core == core.core));
                let busy = core.busy_ns.saturating_sub(before.map_or(0, |b| b.busy_ns));
                view.utilization = (busy as f64 / period.as_nanos() as f64).clamp(0.0, 1.0);
                view.executions = core.executions.saturating_sub(before.map_or(0, |b| b.executions));
                view.switches = core.switches.saturating_sub(before.map_or(0, |b| b.switches));
                view.model = core.model.clone();
            }
        }

        let mut processes: BTreeMap<u32, ProcessView> = BTreeMap::new();
        for core in after.status.iter() {
            for owner in &core.owners {
                processes
                    .entry(owner.pid)
                    .or_insert_with(|| ProcessView {
                        pid: owner.pid,
                        command: owner.command.clone(),
                        tag: None,
                        unreadable: None,
                        cores: Vec::new(),
                        models: Vec::new(),
                        cpu_percent: cpu_percent(before, after, owner.pid, period),
                    })
                    .cores
                    .push(core.index);
            }
        }
        for entry in &after.entries {
            let Some(process) = processes.get_mut(&entry.owner.pid) else { continue };
            match &entry.publication {
                Err(why) => process.unreadable = Some(format!("publication beside core {}: {why}", entry.core)),
                Ok(publication) => {
                    process.tag = publication.tag.clone();
                    let previous = earlier(publication);
                    process.models = publication
                        .models
                        .iter()
                        .map(|m| {
                            let before =
                                previous.and_then(|p| p.models.iter().find(|o| o.name == m.name && o.id == m.id));
                            let latency = delta(&m.latency, before.map(|b| &b.latency[..]));
                            let failed = m.failures.saturating_sub(before.map_or(0, |b| b.failures));
                            let failed_input = m.input_failures.saturating_sub(before.map_or(0, |b| b.input_failures));
                            ModelView {
                                name: m.name.clone(),
                                id: m.id,
                                instances: m.instances.clone(),
                                completed: latency.iter().map(|(_, n)| n).sum(),
                                failed,
                                // A part of `failed` (one publication counts both at once).
                                failed_input: failed_input.min(failed),
                                queue_depth: m.queue_depth.clone(),
                                latency: percentiles(&latency),
                                compute: percentiles(&delta(&m.compute, before.map(|b| &b.compute[..]))),
                                moves: m.moves,
                                engine: m.engine.engine.clone(),
                            }
                        })
                        .collect();
                }
            }
        }

        let cpu = after
            .cpu
            .iter()
            .enumerate()
            .map(|(i, a)| CpuUsage::between(&before.cpu.get(i).copied().unwrap_or_default(), a));
        View {
            period,
            cores,
            processes: processes.into_values().collect(),
            cpu: cpu.collect(),
            context_switches: after.context_switches.saturating_sub(before.context_switches),
            memory: after.memory,
        }
    }
}

fn cpu_percent(before: &Snapshot, after: &Snapshot, pid: u32, period: Duration) -> (f64, f64) {
    let (Some(old), Some(new)) = (before.process_cpu.get(&pid), after.process_cpu.get(&pid)) else { return (0.0, 0.0) };
    // SAFETY: sysconf reads a constant of the C library.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let pct = |a: u64, b: u64| a.saturating_sub(b) as f64 / ticks / period.as_secs_f64() * 100.0;
    (pct(new.0, old.0), pct(new.1, old.1))
}

/// The instances `owner` published on global core `index`, as `name[replica]`.
fn instances_on(owner: &Owner, index: usize) -> Vec<String> {
    let on_core = owner.instances.iter().filter(|i| i.cores.contains(&index));
    let labels: Vec<String> = on_core.map(|i| corral_cores::instance_label(&i.name, i.instance)).collect();
    if labels.is_empty() { owner.models.clone() } else { labels }
}

/// `after - before` per bucket, non-negative.
fn delta(after: &[(u32, u64)], before: Option<&[(u32, u64)]>) -> Vec<(u32, u64)> {
    let before: BTreeMap<u32, u64> = before.unwrap_or_default().iter().copied().collect();
    let mut buckets: Vec<(u32, u64)> = after
        .iter()
        .map(|&(bucket, count)| (bucket, count.saturating_sub(before.get(&bucket).copied().unwrap_or(0))))
        .filter(|&(_, count)| count > 0)
        .collect();
    buckets.sort_unstable();
    buckets
}

fn percentiles(buckets: &[(u32, u64)]) -> Percentiles {
    let at = |fraction: f64| corral_cores::bucket_percentile(buckets, fraction).map(latency_bucket_limit);
    Percentiles { p0: at(0.0), p1: at(0.01), p25: at(0.25), p50: at(0.50), p75: at(0.75), p99: at(0.99), p100: at(1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_percentiles_count_only_the_new_calls() {
        let before = [(10, 5), (20, 1)];
        let after = [(10, 5), (20, 3), (30, 1)];
        let new = delta(&after, Some(&before));
        assert_eq!(new, vec![(20, 2), (30, 1)]);
        let p = percentiles(&new);
        assert_eq!(p.p0, Some(latency_bucket_limit(20)));
        assert_eq!(p.p50, Some(latency_bucket_limit(20)));
        assert_eq!(p.p100, Some(latency_bucket_limit(30)));
        assert_eq!(percentiles(&[]).p50, None);
        assert_eq!(delta(&[(1, 1)], Some(&[(1, 5)])), vec![], "a counter that went back counts as zero");
    }

    #[test]
    fn proc_stat_gives_cpu_times_and_context_switches() {
        let text = "cpu  10 1 5 100 2 0 3 0 0 0\ncpu0 10 1 5 100 2 0 3 0 0 0\nintr 5 1\nctxt 123456\nbtime 1\n";
        let (cpu, context_switches) = parse_proc_stat(text);
        assert_eq!((cpu.len(), cpu[1].soft_irq, context_switches), (2, 3, 123456));
        assert_eq!(parse_proc_stat("").1, 0);
    }
}
