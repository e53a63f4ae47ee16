//! The CPU quota of this process's cgroup: how many CPUs' worth of time the kernel lets the
//! process use, whatever its cpuset holds (SPEC §2).
//!
//! A Kubernetes Burstable or shared-pool container runs on a cpuset of every shared CPU under
//! a CFS quota equal to its CPU limit; a runtime that sizes itself from the cpuset alone runs
//! more threads than the quota feeds and is throttled every period. [`cpu_quota`] reads the
//! quota so that the registry can cap the default request (see `registry.rs`).
//!
//! Where the limits are:
//!
//! - cgroup v2: `cpu.max` (`$QUOTA $PERIOD`, or `max $PERIOD` for none) in the process's
//!   cgroup and in every ancestor up to the root of the mount (a container's cgroup namespace
//!   makes its own cgroup that root).
//! - cgroup v1: `cpu.cfs_quota_us` (`-1` for none) and `cpu.cfs_period_us` in the same walk,
//!   on the hierarchy that carries the `cpu` controller.
//!
//! Which folder is the process's comes from `/proc/self/cgroup` (`0::/path` for v2,
//! `N:cpu,cpuacct:/path` for v1) joined to the mount point that `/proc/self/mountinfo` gives
//! for that hierarchy (less the mount's own root, for containers that mount a subtree). Every
//! level and both versions (a hybrid host mounts both) are read, and the tightest limit wins,
//! since the kernel enforces each of them. A missing file is no limit at that level (v2 only
//! has `cpu.max` where the `cpu` controller is enabled); a file that exists but does not
//! parse is an error, never a guess.

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
};

/// A CFS bandwidth limit: `quota_us` of CPU time every `period_us`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
    /// The cgroup folder that sets it (the tightest of the process's cgroup and its ancestors).
    pub cgroup: PathBuf,
    pub version: CgroupVersion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CpuQuota {
    /// The limit in CPUs (1.5 for 150000 µs every 100000 µs).
    pub fn cpus(&self) -> f64 {
        self.quota_us as f64 / self.period_us as f64
    }

    /// Whole cores of `cpus_per_core` CPUs the quota feeds: floor(quota ÷ CPUs per core), at
    /// least 1 (a process always gets a core; the kernel only throttles it).
    pub fn cores(&self, cpus_per_core: usize) -> usize {
        let per_core = u128::from(self.period_us) * cpus_per_core.max(1) as u128;
        let cores = u128::from(self.quota_us) / per_core;
        usize::try_from(cores).unwrap_or(usize::MAX).max(1)
    }

    /// True when this limit allows less CPU time than `other`.
    fn is_tighter_than(&self, other: &CpuQuota) -> bool {
        u128::from(self.quota_us) * u128::from(other.period_us)
            < u128::from(other.quota_us) * u128::from(self.period_us)
    }
}

/// `1.5 CPUs (cpu.max 150000 100000 in /sys/fs/cgroup/kubepods.slice/…)`.
impl fmt::Display for CpuQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cpus = match format_cpus(self.cpus()) {
            one if one == "1" => "1 CPU".to_owned(),
            cpus => format!("{cpus} CPUs"),
        };
        match self.version {
            CgroupVersion::V2 => {
                write!(f, "{cpus} (cpu.max {} {} in {})", self.quota_us, self.period_us, self.cgroup.display())
            }
            CgroupVersion::V1 => write!(
                f,
                "{cpus} (cpu.cfs_quota_us {} per cpu.cfs_period_us {} in {})",
                self.quota_us,
                self.period_us,
                self.cgroup.display()
            ),
        }
    }
}

/// A CPU amount as people write it: `1.5`, `2`, `0.25` (at most 3 decimals).
pub fn format_cpus(cpus: f64) -> String {
    let text = format!("{cpus:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "cannot read the CPU quota in {}: {error}\nhint: corral sizes itself to the cgroup's quota; check that the cgroup file system is mounted readable",
        path.display()
    )]
    Read { path: PathBuf, error: io::Error },
    #[error(
        "{} holds `{text}`, which is not a CPU quota ({expected})\nhint: corral sizes itself to the cgroup's quota; check what wrote that file",
        path.display()
    )]
    Malformed { path: PathBuf, text: String, expected: &'static str },
}

/// The tightest CPU quota over this process's cgroups, or `None` when nothing limits it (or
/// when `/proc` does not say which cgroups those are).
pub fn cpu_quota() -> Result<Option<CpuQuota>, CgroupError> {
    let (Ok(mountinfo), Ok(cgroups)) =
        (fs::read_to_string("/proc/self/mountinfo"), fs::read_to_string("/proc/self/cgroup"))
    else {
        return Ok(None);
    };
    quota_in(Path::new("/"), &mountinfo, &cgroups)
}

/// [`cpu_quota`] over a file system rooted at `root` (`/` on a host; a fixture folder in
/// tests), with the texts of `/proc/self/mountinfo` and `/proc/self/cgroup`.
fn quota_in(root: &Path, mountinfo: &str, cgroups: &str) -> Result<Option<CpuQuota>, CgroupError> {
    let mounts = parse_mountinfo(mountinfo);
    let mut tightest: Option<CpuQuota> = None;
    for line in cgroups.lines() {
        // `hierarchy-id:controllers:path`; the path may itself hold colons.
        let mut fields = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let version = match controllers {
            "" => CgroupVersion::V2,
            list if list.split(',').any(|c| c == "cpu") => CgroupVersion::V1,
            _ => continue,
        };
        let Some((mount_point, folder)) = locate(&mounts, version, "cpu", path) else { continue };
        let mount_point = root.join(mount_point.strip_prefix("/").unwrap_or(&mount_point));
        let folder = if folder.as_os_str().is_empty() { mount_point.clone() } else { mount_point.join(folder) };
        for dir in folder.ancestors().take_while(|dir| dir.starts_with(&mount_point)) {
            let quota = match version {
                CgroupVersion::V2 => read_v2(dir)?,
                CgroupVersion::V1 => read_v1(dir)?,
            };
            if let Some(quota) = quota
                && tightest.as_ref().is_none_or(|t| quota.is_tighter_than(t))
            {
                tightest = Some(quota);
            }
        }
    }
    Ok(tightest)
}

/// One cgroup mount: its type, super options (the v1 controllers), root inside the
/// hierarchy, and where it is mounted.
struct Mount {
    version: CgroupVersion,
    /// The v1 controllers it carries (empty on v2).
    controllers: Vec<String>,
    root: PathBuf,
    mount_point: PathBuf,
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        // `36 35 98:0 ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`
        let Some((before, after)) = line.split_once(" - ") else { continue };
        let before: Vec<&str> = before.split(' ').collect();
        let after: Vec<&str> = after.split(' ').collect();
        let (Some(root), Some(mount_point), Some(fs_type)) = (before.get(3), before.get(4), after.first()) else {
            continue;
        };
        let (version, controllers) = match *fs_type {
            "cgroup2" => (CgroupVersion::V2, Vec::new()),
            "cgroup" => {
                let options = after.get(2).copied().unwrap_or_default();
                (CgroupVersion::V1, options.split(',').map(str::to_owned).collect())
            }
            _ => continue,
        };
        mounts.push(Mount {
            version,
            controllers,
            root: PathBuf::from(unescape(root)),
            mount_point: PathBuf::from(unescape(mount_point)),
        });
    }
    mounts
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount of `version`'s hierarchy that shows `path`, and `path` relative to it: the mount
/// with the longest root that is a prefix of `path`. A path outside every mount's root (a
/// process moved since the mount was made) is looked up at the mount point itself.
fn locate(mounts: &[Mount], version: CgroupVersion, controller: &str, path: &str) -> Option<(PathBuf, PathBuf)> {
    let path = Path::new(path);
    let candidates = mounts.iter().filter(|m| {
        m.version == version && (version == CgroupVersion::V2 || m.controllers.iter().any(|c| c == controller))
    });
    let inside = candidates.clone().filter(|m| path.starts_with(&m.root)).max_by_key(|m| m.root.components().count());
    match inside {
        Some(mount) => {
            let relative = path.strip_prefix(&mount.root).expect("checked by starts_with");
            Some((mount.mount_point.clone(), relative.to_owned()))
        }
        None => candidates.into_iter().next().map(|m| (m.mount_point.clone(), PathBuf::new())),
    }
}

/// The CPUs of this process's cpuset as the kernel enforces it now (v1 `cpuset.effective_cpus`
/// on the hierarchy with the `cpuset` controller, else v2 `cpuset.cpus.effective` in the
/// nearest cgroup that has one), or `None` when no cgroup file system says. Read afresh on
/// each call: a runtime follows its cpuset with it (SPEC §2).
pub fn cpuset_cpus() -> Option<Vec<usize>> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
    cpuset_in(Path::new("/"), &mountinfo, &cgroups)
}

fn cpuset_in(root: &Path, mountinfo: &str, cgroups: &str) -> Option<Vec<usize>> {
    let mounts = parse_mountinfo(mountinfo);
    let mut lines: Vec<(CgroupVersion, &str)> = cgroups
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            match controllers {
                "" => Some((CgroupVersion::V2, path)),
                list if list.split(',').any(|c| c == "cpuset") => Some((CgroupVersion::V1, path)),
                _ => None,
            }
        })
        .collect();
    lines.sort_by_key(|(version, _)| *version == CgroupVersion::V2); // v1's cpuset first
    for (version, path) in lines {
        let Some((mount_point, folder)) = locate(&mounts, version, "cpuset", path) else { continue };
        let mount_point = root.join(mount_point.strip_prefix("/").unwrap_or(&mount_point));
        let folder = if folder.as_os_str().is_empty() { mount_point.clone() } else { mount_point.join(folder) };
        let file = match version {
            CgroupVersion::V1 => "cpuset.effective_cpus",
            CgroupVersion::V2 => "cpuset.cpus.effective",
        };
        for dir in folder.ancestors().take_while(|dir| dir.starts_with(&mount_point)) {
            if let Some(cpus) =
                fs::read_to_string(dir.join(file)).ok().and_then(|t| crate::list::parse_cpu_list(t.trim()))
            {
                return Some(cpus);
            }
        }
    }
    None
}

/// The file's text, or `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(CgroupError::Read { path: path.to_owned(), error }),
    }
}

fn read_v2(dir: &Path) -> Result<Option<CpuQuota>, CgroupError> {
    let path = dir.join("cpu.max");
    let Some(text) = read_optional(&path)? else { return Ok(None) };
    let malformed = || CgroupError::Malformed {
        path: path.clone(),
        text: text.trim().to_owned(),
        expected: "`QUOTA PERIOD` or `max PERIOD` in microseconds",
    };
    let mut words = text.split_whitespace();
    let (Some(quota), Some(period), None) = (words.next(), words.next(), words.next()) else {
        return Err(malformed());
    };
    let period_us = positive(period).ok_or_else(malformed)?;
    if quota == "max" {
        return Ok(None);
    }
    let quota_us = positive(quota).ok_or_else(malformed)?;
    Ok(Some(CpuQuota { quota_us, period_us, cgroup: dir.to_owned(), version: CgroupVersion::V2 }))
}

fn read_v1(dir: &Path) -> Result<Option<CpuQuota>, CgroupError> {
    let quota_path = dir.join("cpu.cfs_quota_us");
    let Some(quota_text) = read_optional(&quota_path)? else { return Ok(None) };
    let quota_us = match quota_text.trim() {
        "-1" => return Ok(None),
        text => positive(text).ok_or_else(|| CgroupError::Malformed {
            path: quota_path.clone(),
            text: text.to_owned(),
            expected: "microseconds per period, or -1 for none",
        })?,
    };
    let period_path = dir.join("cpu.cfs_period_us");
    let Some(period_text) = read_optional(&period_path)? else { return Ok(None) };
    let period_us = positive(period_text.trim()).ok_or_else(|| CgroupError::Malformed {
        path: period_path.clone(),
        text: period_text.trim().to_owned(),
        expected: "the period in microseconds",
    })?;
    Ok(Some(CpuQuota { quota_us, period_us, cgroup: dir.to_owned(), version: CgroupVersion::V1 }))
}

fn positive(text: &str) -> Option<u64> {
    text.parse::<u64>().ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    /// Builds the files `spec` names (`path=content` per line, paths under the root) in a
    /// fresh folder, reads the quota there, and renders it with the folder as `<root>`.
    #[track_caller]
    fn check(files: &[(&str, &str)], mountinfo: &str, cgroups: &str, expect: Expect) {
        let root = tempfile::tempdir().expect("temp dir");
        for (path, content) in files {
            let path = root.path().join(path);
            fs::create_dir_all(path.parent().expect("a file in a folder")).expect("mkdir");
            fs::write(path, content).expect("write");
        }
        let actual = match quota_in(root.path(), mountinfo, cgroups) {
            Ok(Some(quota)) => format!("{quota} -> {} cores of 1 CPU, {} of 2", quota.cores(1), quota.cores(2)),
            Ok(None) => "no quota".to_owned(),
            Err(error) => format!("error: {error}"),
        };
        let root = root.path().display().to_string();
        expect.assert_eq(&actual.replace(&root, "<root>"));
    }

    const V2_MOUNT: &str = "31 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";

    #[test]
    fn v2_reads_cpu_max_of_the_process_and_its_ancestors() {
        // A Kubernetes Burstable container under the systemd driver: the pod's limit is the
        // container's, so both say 1.5 CPUs; the slice above has none.
        let pod = "sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/pod1.slice";
        check(
            &[
                ("sys/fs/cgroup/kubepods.slice/cpu.max", "max 100000\n"),
                (&format!("{pod}/cpu.max"), "150000 100000\n"),
                (&format!("{pod}/cri-abc.scope/cpu.max"), "150000 100000\n"),
            ],
            V2_MOUNT,
            "0::/kubepods.slice/kubepods-burstable.slice/pod1.slice/cri-abc.scope\n",
            expect![[
                r#"1.5 CPUs (cpu.max 150000 100000 in <root>/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/pod1.slice/cri-abc.scope) -> 1 cores of 1 CPU, 1 of 2"#
            ]],
        );
        check(&[("sys/fs/cgroup/ctr/cpu.max", "max 100000\n")], V2_MOUNT, "0::/ctr\n", expect![[r#"no quota"#]]);
        // No cpu.max at all: the cpu controller is not enabled there.
        check(&[], V2_MOUNT, "0::/ctr\n", expect![[r#"no quota"#]]);
    }

    #[test]
    fn the_tightest_ancestor_wins() {
        // The parent allows 1 CPU (50 ms every 50 ms), the child 3: the parent's limit holds.
        check(
            &[("sys/fs/cgroup/a/cpu.max", "50000 50000\n"), ("sys/fs/cgroup/a/b/cpu.max", "300000 100000\n")],
            V2_MOUNT,
            "0::/a/b\n",
            expect!["1 CPU (cpu.max 50000 50000 in <root>/sys/fs/cgroup/a) -> 1 cores of 1 CPU, 1 of 2"],
        );
        check(
            &[("sys/fs/cgroup/a/cpu.max", "800000 100000\n"), ("sys/fs/cgroup/a/b/cpu.max", "450000 100000\n")],
            V2_MOUNT,
            "0::/a/b\n",
            expect![[r#"4.5 CPUs (cpu.max 450000 100000 in <root>/sys/fs/cgroup/a/b) -> 4 cores of 1 CPU, 2 of 2"#]],
        );
    }

    #[test]
    fn a_container_sees_its_own_cgroup_as_the_root() {
        // A cgroup namespace: `/proc/self/cgroup` says `/`, the mount's root is `/`, and the
        // container's own limit sits at the mount point.
        check(
            &[("sys/fs/cgroup/cpu.max", "250000 100000\n")],
            V2_MOUNT,
            "0::/\n",
            expect![[r#"2.5 CPUs (cpu.max 250000 100000 in <root>/sys/fs/cgroup) -> 2 cores of 1 CPU, 1 of 2"#]],
        );
        // Without a namespace a container may mount its subtree: the mount's root is stripped.
        check(
            &[("sys/fs/cgroup/cpu.max", "100000 100000\n")],
            "40 31 0:38 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "0::/docker/abc\n",
            expect!["1 CPU (cpu.max 100000 100000 in <root>/sys/fs/cgroup) -> 1 cores of 1 CPU, 1 of 2"],
        );
    }

    #[test]
    fn the_cpuset_is_read_where_the_cpuset_controller_is() {
        let cpuset = |files: &[(&str, &str)], mountinfo: &str, cgroups: &str| {
            let root = tempfile::tempdir().expect("temp dir");
            for (path, content) in files {
                let path = root.path().join(path);
                fs::create_dir_all(path.parent().expect("a file in a folder")).expect("mkdir");
                fs::write(path, content).expect("write");
            }
            cpuset_in(root.path(), mountinfo, cgroups)
        };
        // v1: the cpuset hierarchy, not the cpu one.
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                  34 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n";
        let files = [
            ("sys/fs/cgroup/cpuset/cpuset.effective_cpus", "0-7\n"),
            ("sys/fs/cgroup/cpuset/pod/ctr/cpuset.effective_cpus", "2,5\n"),
        ];
        assert_eq!(cpuset(&files, v1, "3:cpuset:/pod/ctr\n1:cpu:/pod/ctr\n"), Some(vec![2, 5]));
        // v2: the nearest cgroup with the file (the controller may be enabled only above).
        let files = [("sys/fs/cgroup/pod/cpuset.cpus.effective", "1-3\n")];
        assert_eq!(cpuset(&files, V2_MOUNT, "0::/pod/ctr\n"), Some(vec![1, 2, 3]));
        assert_eq!(cpuset(&[], V2_MOUNT, "0::/pod/ctr\n"), None, "no file: nothing to follow");
    }

    #[test]
    fn v1_reads_cfs_quota_and_period_on_the_cpu_hierarchy() {
        let mounts = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
                      34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n";
        let cgroups = "4:cpuset:/kubepods/burstable/pod1/ctr\n3:cpu,cpuacct:/kubepods/burstable/pod1/ctr\n";
        let dir = "sys/fs/cgroup/cpu,cpuacct";
        check(
            &[
                (&format!("{dir}/cpu.cfs_quota_us"), "-1\n"),
                (&format!("{dir}/cpu.cfs_period_us"), "100000\n"),
                (&format!("{dir}/kubepods/burstable/pod1/ctr/cpu.cfs_quota_us"), "150000\n"),
                (&format!("{dir}/kubepods/burstable/pod1/ctr/cpu.cfs_period_us"), "100000\n"),
                // cpuset's hierarchy never carries a quota, even if a file by that name were there.
                ("sys/fs/cgroup/cpuset/kubepods/burstable/pod1/ctr/cpu.cfs_quota_us", "1000\n"),
            ],
            mounts,
            cgroups,
            expect![[
                r#"1.5 CPUs (cpu.cfs_quota_us 150000 per cpu.cfs_period_us 100000 in <root>/sys/fs/cgroup/cpu,cpuacct/kubepods/burstable/pod1/ctr) -> 1 cores of 1 CPU, 1 of 2"#
            ]],
        );
        check(
            &[(&format!("{dir}/cpu.cfs_quota_us"), "-1\n"), (&format!("{dir}/cpu.cfs_period_us"), "100000\n")],
            mounts,
            "3:cpu,cpuacct:/\n",
            expect![[r#"no quota"#]],
        );
    }

    #[test]
    fn a_hybrid_host_reads_both_versions() {
        // v1 carries the cpu controller; the v2 mount has none (no cpu.max anywhere).
        let mounts = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                      33 31 0:30 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        check(
            &[
                ("sys/fs/cgroup/cpu/job/cpu.cfs_quota_us", "300000\n"),
                ("sys/fs/cgroup/cpu/job/cpu.cfs_period_us", "200000\n"),
                ("sys/fs/cgroup/cpuacct/job/cpu.cfs_quota_us", "1\n"),
            ],
            mounts,
            "2:cpuacct:/job\n1:cpu:/job\n0::/job\n",
            expect![[
                r#"1.5 CPUs (cpu.cfs_quota_us 300000 per cpu.cfs_period_us 200000 in <root>/sys/fs/cgroup/cpu/job) -> 1 cores of 1 CPU, 1 of 2"#
            ]],
        );
    }

    #[test]
    fn malformed_files_are_errors() {
        check(
            &[("sys/fs/cgroup/cpu.max", "lots 100000\n")],
            V2_MOUNT,
            "0::/\n",
            expect![[r#"
                error: <root>/sys/fs/cgroup/cpu.max holds `lots 100000`, which is not a CPU quota (`QUOTA PERIOD` or `max PERIOD` in microseconds)
                hint: corral sizes itself to the cgroup's quota; check what wrote that file"#]],
        );
        check(
            &[("sys/fs/cgroup/cpu.max", "max\n")],
            V2_MOUNT,
            "0::/\n",
            expect![[r#"
                error: <root>/sys/fs/cgroup/cpu.max holds `max`, which is not a CPU quota (`QUOTA PERIOD` or `max PERIOD` in microseconds)
                hint: corral sizes itself to the cgroup's quota; check what wrote that file"#]],
        );
    }

    #[test]
    fn mountinfo_escapes_and_cpu_amounts() {
        assert_eq!(unescape(r"/mnt/with\040space"), "/mnt/with space");
        assert_eq!(unescape(r"/plain\"), r"/plain\");
        assert_eq!(format_cpus(1.5), "1.5");
        assert_eq!(format_cpus(2.0), "2");
        assert_eq!(format_cpus(0.25), "0.25");
        let quota =
            CpuQuota { quota_us: 10_000, period_us: 100_000, cgroup: PathBuf::new(), version: CgroupVersion::V2 };
        assert_eq!(quota.cores(1), 1, "a tenth of a CPU still gets one core");
    }

    #[test]
    fn this_host_answers() {
        // Whatever the machine: reading the real files never fails.
        cpu_quota().expect("this host's cgroup files parse");
    }
}
