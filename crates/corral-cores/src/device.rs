//! Devices: which cores corral manages on this host and what hardware stands behind each.
//!
//! A [`DeviceSpec`] is what the user names (`cpu`, `cpu:logical`, `sim:16`,
//! `sim:inf1.6xlarge`); a [`Device`] is that spec resolved on this host: an ordered list of
//! cores, each with the host CPUs it stands for, and which of them this process may take.
//!
//! On `cpu` the cores are the CPUs the container may use, the same list in every process on
//! the host (SPEC §2): the cgroup cpuset at the root of this process's cgroup view (v2
//! `cpuset.cpus.effective`, v1 `cpuset.effective_cpus`, whichever is mounted), else the
//! online CPUs, plus any CPU the process's affinity names (so a process always sees the CPUs
//! it runs on). SMT siblings (sysfs `topology/thread_siblings_list`) form one core unless
//! `cpu:logical` asks for one core per logical CPU. Cores are ordered by their lowest CPU.
//!
//! A narrowed affinity (`taskset`, `corral launch`, a child cgroup, systemd `CPUAffinity`)
//! never renumbers the cores: it marks which cores the process may take by default
//! ([`Device::may_take`]), those with a CPU inside the affinity. A launcher that pinned a
//! child before it started and the child thus agree on every index, and `corral ls` shows
//! one numbering from every process. On `sim` every core may be taken.
//!
//! On `cpu` the device also carries the CFS quota of the process's cgroup ([`CpuQuota`],
//! read by `cgroup.rs`): the registry caps the default and a core count at the cores the
//! quota feeds, floor(quota ÷ [`Device::cpus_per_core`]), at least 1 (SPEC §2). The quota,
//! like the affinity, never changes the numbering.
//!
//! The registry locks *slots*, not cores: on `cpu` a slot is a host CPU, so `cpu` and
//! `cpu:logical` processes compete for the same hardware; on `sim` a slot is a core.

use std::{fmt, fs, str::FromStr};

use crate::{
    cgroup::{CpuQuota, cpu_quota},
    core_set::CoreSet,
    list::parse_cpu_list,
};

/// The simulated instance types and their core counts (SPEC §2).
pub const SIM_PRESETS: &[(&str, usize)] = &[
    ("inf1.xlarge", 4),
    ("inf1.2xlarge", 4),
    ("inf1.6xlarge", 16),
    ("inf1.24xlarge", 64),
    ("inf2.xlarge", 2),
    ("inf2.8xlarge", 2),
    ("inf2.24xlarge", 12),
    ("inf2.48xlarge", 24),
    ("trn1.2xlarge", 2),
    ("trn1.32xlarge", 32),
    ("trn2.48xlarge", 64),
];

/// The largest `sim:N` accepted; a bound so that a typo cannot create a million lock files.
pub const SIM_CORES_MAX: usize = 4096;

/// A device as the user names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// The CPUs this process may run on; `logical` makes each logical CPU a core.
    Cpu { logical: bool },
    /// A simulated device: `name` is a preset (`inf1.6xlarge`) or the core count as typed.
    Sim { name: String, cores: usize },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceSpecError {
    #[error(
        "unknown device `{given}`\nhint: valid devices are cpu, cpu:logical, sim:N (1 to {SIM_CORES_MAX}) and sim:<instance type>, with instance types {}",
        preset_names()
    )]
    Unknown { given: String },
    #[error("device `{given}` asks for {cores} simulated cores\nhint: use 1 to {SIM_CORES_MAX}")]
    SimCount { given: String, cores: usize },
}

fn preset_names() -> String {
    let names: Vec<&str> = SIM_PRESETS.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

impl FromStr for DeviceSpec {
    type Err = DeviceSpecError;

    fn from_str(given: &str) -> Result<DeviceSpec, DeviceSpecError> {
        let unknown = || DeviceSpecError::Unknown { given: given.to_owned() };
        match given.trim() {
            "cpu" => Ok(DeviceSpec::Cpu { logical: false }),
            "cpu:logical" => Ok(DeviceSpec::Cpu { logical: true }),
            other => {
                let name = other.strip_prefix("sim:").ok_or_else(unknown)?;
                if let Some((preset, cores)) = SIM_PRESETS.iter().find(|(p, _)| *p == name) {
                    return Ok(DeviceSpec::Sim { name: (*preset).to_owned(), cores: *cores });
                }
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(unknown());
                }
                let cores: usize = name.parse().map_err(|_| unknown())?;
                if cores == 0 || cores > SIM_CORES_MAX {
                    return Err(DeviceSpecError::SimCount { given: given.to_owned(), cores });
                }
                Ok(DeviceSpec::Sim { name: cores.to_string(), cores })
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu { logical: false } => f.write_str("cpu"),
            DeviceSpec::Cpu { logical: true } => f.write_str("cpu:logical"),
            DeviceSpec::Sim { name, .. } => write!(f, "sim:{name}"),
        }
    }
}

impl DeviceSpec {
    /// The registry folder shared by every process naming this device. Both `cpu` flavours
    /// share one, since they lock the same host CPUs.
    pub(crate) fn registry_key(&self) -> String {
        match self {
            DeviceSpec::Cpu { .. } => "cpu".to_owned(),
            DeviceSpec::Sim { name, .. } => format!("sim-{name}"),
        }
    }

    pub fn is_sim(&self) -> bool {
        matches!(self, DeviceSpec::Sim { .. })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot read this process's CPU affinity")]
    Affinity(#[source] nix::Error),
    #[error("this process may run on no CPU at all (empty affinity mask)")]
    NoCpus,
}

/// A device resolved on this host: its cores in index order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    spec: DeviceSpec,
    /// For each core, the host CPUs it stands for (ascending); empty on `sim`.
    core_cpus: Vec<Vec<usize>>,
    /// For each core, whether this process may take it by default (inside its affinity).
    may_take: Vec<bool>,
    /// The CPU quota of this process's cgroup (`cpu` only), when it has one.
    quota: Option<CpuQuota>,
}

impl Device {
    /// Resolves `spec` on this host.
    pub fn open(spec: DeviceSpec) -> Result<Device, DeviceError> {
        match spec {
            DeviceSpec::Sim { cores, .. } => {
                Ok(Device { core_cpus: vec![Vec::new(); cores], may_take: vec![true; cores], spec, quota: None })
            }
            DeviceSpec::Cpu { logical } => {
                let affinity = allowed_cpus()?;
                let host = host_cpus();
                // A quota file that cannot be read is a limit not known, not a broken device:
                // say so and go on without it.
                let quota = cpu_quota().unwrap_or_else(|error| {
                    tracing::warn!("cannot read the CPU quota, so cores are not capped by it: {error}");
                    None
                });
                let device =
                    Device::from_cpus(
                        spec,
                        &host,
                        &affinity,
                        |cpu| if logical { vec![cpu] } else { smt_siblings(cpu) },
                    );
                Ok(device.with_quota(quota))
            }
        }
    }

    /// Groups the `host` CPUs (and any of `affinity` missing from them) into cores: CPUs
    /// whose sibling sets (as reported by `siblings`) coincide form one core, and a core may
    /// be taken when one of its CPUs is in `affinity`. Pure, so the grouping can be tested on
    /// made-up topologies.
    pub fn from_cpus(
        spec: DeviceSpec,
        host: &[usize],
        affinity: &[usize],
        siblings: impl Fn(usize) -> Vec<usize>,
    ) -> Device {
        let mut cpus: Vec<usize> = host.iter().chain(affinity).copied().collect();
        cpus.sort_unstable();
        cpus.dedup();
        let mut core_cpus: Vec<Vec<usize>> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for &cpu in &cpus {
            if seen.contains(&cpu) {
                continue;
            }
            let mut group: Vec<usize> =
                siblings(cpu).into_iter().filter(|c| cpus.binary_search(c).is_ok() && !seen.contains(c)).collect();
            if !group.contains(&cpu) {
                group.push(cpu);
            }
            group.sort_unstable();
            group.dedup();
            seen.extend(group.iter().copied());
            core_cpus.push(group);
        }
        let affinity: std::collections::BTreeSet<usize> = affinity.iter().copied().collect();
        let may_take = core_cpus.iter().map(|group| group.iter().any(|cpu| affinity.contains(cpu))).collect();
        Device { spec, core_cpus, may_take, quota: None }
    }

    /// The same device under a CPU quota (or none); `sim` devices ignore it, since their
    /// cores burn no CPU.
    pub fn with_quota(self, quota: Option<CpuQuota>) -> Device {
        let quota = if self.spec.is_sim() { None } else { quota };
        Device { quota, ..self }
    }

    /// The CPU quota of this process's cgroup, when it has one (`cpu` only).
    pub fn quota(&self) -> Option<&CpuQuota> {
        self.quota.as_ref()
    }

    /// The most CPUs any core stands for: 2 on `cpu` with 2-way SMT, 1 on `cpu:logical` and
    /// `sim`. The quota's cores are counted in these: where a cpuset holds both siblings of
    /// some cores and one of others, the cap counts every core as the widest (it may take
    /// fewer cores than the quota would feed, never more).
    pub fn cpus_per_core(&self) -> usize {
        self.core_cpus.iter().map(Vec::len).max().unwrap_or(1).max(1)
    }

    /// How many cores the CPU quota feeds: floor(quota ÷ CPUs per core), at least 1; `None`
    /// without a quota. The default and a core count take at most this many.
    pub fn quota_cores(&self) -> Option<usize> {
        self.quota.as_ref().map(|quota| quota.cores(self.cpus_per_core()))
    }

    /// True when this process may take core `index` by default: on `cpu`, when one of its
    /// CPUs is inside the process's affinity; always on `sim`.
    pub fn may_take(&self, index: usize) -> bool {
        self.may_take[index]
    }

    /// True when the affinity leaves some core out.
    pub fn is_narrowed(&self) -> bool {
        self.may_take.iter().any(|&may| !may)
    }

    /// The cores this process may take by default, ascending.
    pub fn takeable(&self) -> Option<CoreSet> {
        CoreSet::from_indices((0..self.len()).filter(|&i| self.may_take[i]))
    }

    pub fn spec(&self) -> &DeviceSpec {
        &self.spec
    }

    /// Number of cores.
    pub fn len(&self) -> usize {
        self.core_cpus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.core_cpus.is_empty()
    }

    /// Host CPUs behind core `index` (empty on `sim`).
    pub fn cpus(&self, index: usize) -> &[usize] {
        &self.core_cpus[index]
    }

    /// The lock-file names (slots) that core `index` needs, ascending.
    pub(crate) fn slot_names(&self, index: usize) -> Vec<String> {
        match self.spec {
            DeviceSpec::Sim { .. } => vec![format!("nc{index}.lock")],
            DeviceSpec::Cpu { .. } => self.core_cpus[index].iter().map(|cpu| format!("cpu{cpu}.lock")).collect(),
        }
    }
}

/// The CPUs this process may run on, ascending.
pub fn allowed_cpus() -> Result<Vec<usize>, DeviceError> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).map_err(DeviceError::Affinity)?;
    let cpus: Vec<usize> = (0..nix::sched::CpuSet::count()).filter(|&cpu| set.is_set(cpu).unwrap_or(false)).collect();
    if cpus.is_empty() {
        return Err(DeviceError::NoCpus);
    }
    Ok(cpus)
}

/// The CPUs this container may use, the same in every process: the root cpuset of this
/// process's cgroup view (v2, then v1), else the online CPUs; empty when none is readable
/// (then the affinity alone makes the device).
pub fn host_cpus() -> Vec<usize> {
    const SOURCES: [&str; 3] = [
        "/sys/fs/cgroup/cpuset.cpus.effective",
        "/sys/fs/cgroup/cpuset/cpuset.effective_cpus",
        "/sys/devices/system/cpu/online",
    ];
    SOURCES
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .filter_map(|text| parse_cpu_list(text.trim()))
        .find(|cpus| !cpus.is_empty())
        .unwrap_or_default()
}

/// The SMT siblings of `cpu` from sysfs; just `cpu` when the topology is not exposed.
fn smt_siblings(cpu: usize) -> Vec<usize> {
    let path = format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
    fs::read_to_string(path).ok().and_then(|text| parse_cpu_list(text.trim())).unwrap_or_else(|| vec![cpu])
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    #[track_caller]
    fn check(given: &str, expect: Expect) {
        let actual = match given.parse::<DeviceSpec>() {
            Ok(spec) => format!("{spec} {spec:?}"),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn device_names() {
        check("cpu", expect![[r#"cpu Cpu { logical: false }"#]]);
        check("cpu:logical", expect![[r#"cpu:logical Cpu { logical: true }"#]]);
        check("sim:16", expect![[r#"sim:16 Sim { name: "16", cores: 16 }"#]]);
        check("sim:inf1.6xlarge", expect![[r#"sim:inf1.6xlarge Sim { name: "inf1.6xlarge", cores: 16 }"#]]);
        check("sim:trn2.48xlarge", expect![[r#"sim:trn2.48xlarge Sim { name: "trn2.48xlarge", cores: 64 }"#]]);
        check(
            "sim:0",
            expect![[r#"
            error: device `sim:0` asks for 0 simulated cores
            hint: use 1 to 4096"#]],
        );
        check(
            "gpu",
            expect![[r#"
            error: unknown device `gpu`
            hint: valid devices are cpu, cpu:logical, sim:N (1 to 4096) and sim:<instance type>, with instance types inf1.xlarge, inf1.2xlarge, inf1.6xlarge, inf1.24xlarge, inf2.xlarge, inf2.8xlarge, inf2.24xlarge, inf2.48xlarge, trn1.2xlarge, trn1.32xlarge, trn2.48xlarge"#]],
        );
        check(
            "sim:inf9.huge",
            expect![[r#"
            error: unknown device `sim:inf9.huge`
            hint: valid devices are cpu, cpu:logical, sim:N (1 to 4096) and sim:<instance type>, with instance types inf1.xlarge, inf1.2xlarge, inf1.6xlarge, inf1.24xlarge, inf2.xlarge, inf2.8xlarge, inf2.24xlarge, inf2.48xlarge, trn1.2xlarge, trn1.32xlarge, trn2.48xlarge"#]],
        );
        check(
            "sim:-1",
            expect![[r#"
            error: unknown device `sim:-1`
            hint: valid devices are cpu, cpu:logical, sim:N (1 to 4096) and sim:<instance type>, with instance types inf1.xlarge, inf1.2xlarge, inf1.6xlarge, inf1.24xlarge, inf2.xlarge, inf2.8xlarge, inf2.24xlarge, inf2.48xlarge, trn1.2xlarge, trn1.32xlarge, trn2.48xlarge"#]],
        );
    }

    #[test]
    fn smt_siblings_form_one_core() {
        // 2 sockets x 2 cores x 2 threads: siblings are (n, n+4); the cgroup allows 0-2 and 4-5.
        let siblings = |cpu: usize| vec![cpu % 4, cpu % 4 + 4];
        let physical =
            Device::from_cpus(DeviceSpec::Cpu { logical: false }, &[0, 1, 2, 4, 5], &[0, 1, 2, 4, 5], siblings);
        assert_eq!(physical.core_cpus, vec![vec![0, 4], vec![1, 5], vec![2]]);
        let logical = Device::from_cpus(DeviceSpec::Cpu { logical: true }, &[5, 0, 1], &[0, 1, 5], |cpu| vec![cpu]);
        assert_eq!(logical.core_cpus, vec![vec![0], vec![1], vec![5]]);
        assert_eq!(physical.slot_names(0), vec!["cpu0.lock", "cpu4.lock"]);
    }

    #[test]
    fn a_narrowed_affinity_limits_what_may_be_taken_but_keeps_the_numbering() {
        // `taskset -c 5` on the host above: the same three cores, only nc1 (CPUs 1 and 5) takeable.
        let siblings = |cpu: usize| vec![cpu % 4, cpu % 4 + 4];
        let pinned = Device::from_cpus(DeviceSpec::Cpu { logical: false }, &[0, 1, 2, 4, 5], &[5], siblings);
        assert_eq!(pinned.core_cpus, vec![vec![0, 4], vec![1, 5], vec![2]]);
        assert_eq!(pinned.takeable().map(|s| s.to_string()), Some("nc1".to_owned()));
        assert!(pinned.is_narrowed());
        // An affinity naming a CPU the cpuset did not list still shows it, as its own core.
        let odd = Device::from_cpus(DeviceSpec::Cpu { logical: true }, &[0, 1], &[1, 3], |cpu| vec![cpu]);
        assert_eq!(odd.core_cpus, vec![vec![0], vec![1], vec![3]]);
        assert_eq!(odd.takeable().map(|s| s.to_string()), Some("nc1-nc2".to_owned()));
    }

    #[test]
    fn this_host_has_cores_numbered_host_wide() {
        let device = Device::open(DeviceSpec::Cpu { logical: true }).expect("affinity is readable");
        let affinity = allowed_cpus().expect("affinity");
        assert!(device.len() >= affinity.len());
        let takeable: Vec<usize> =
            device.takeable().expect("some").iter().flat_map(|i| device.cpus(i).to_vec()).collect();
        assert_eq!(takeable, affinity);
    }
}
