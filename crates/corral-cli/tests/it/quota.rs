//! CPU quotas on real cgroups (SPEC §2): a corral process in a child cgroup whose parent has
//! a CFS quota of 1.5 CPUs over a 2-CPU cpuset takes 1 core by default, and 2 once the quota
//! is `max`. The cgroups are made in the host's own cgroup file system (v2 where it carries
//! the cpu controller, else v1), so these tests run as root; where the kernel refuses, they
//! fail with its reason unless `CORRAL_TEST_SKIP` lists `cgroups`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

use super::{Host, cannot_run};

/// A cgroup made for one test: `parent` holds the quota and the 2-CPU cpuset, the process
/// joins `inner` below it (no quota of its own: the tightest ancestor must win). Removed,
/// deepest first, when dropped.
struct TestCgroup {
    /// Folders made, in order.
    made: Vec<PathBuf>,
    /// The `cgroup.procs` files a process joins (one per v1 hierarchy, one on v2).
    procs: Vec<PathBuf>,
    quota: QuotaFiles,
}

enum QuotaFiles {
    /// `cpu.max`.
    V2(PathBuf),
    /// `cpu.cfs_quota_us`, `cpu.cfs_period_us`.
    V1(PathBuf, PathBuf),
}

/// (mount point, file system type, super options) of each cgroup mount.
fn cgroup_mounts() -> Vec<(PathBuf, String, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((before, after)) = line.split_once(" - ") else { continue };
        let (Some(point), mut after) = (before.split(' ').nth(4), after.split(' ')) else { continue };
        let (Some(fs_type), _, Some(options)) = (after.next(), after.next(), after.next()) else { continue };
        if fs_type.starts_with("cgroup") {
            mounts.push((PathBuf::from(point), fs_type.to_owned(), options.to_owned()));
        }
    }
    mounts
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("cannot write `{text}` to {}: {e}", path.display()))
}

fn mkdir(made: &mut Vec<PathBuf>, path: PathBuf) -> Result<(), String> {
    fs::create_dir(&path).map_err(|e| format!("cannot make the cgroup {}: {e}", path.display()))?;
    made.push(path);
    Ok(())
}

impl TestCgroup {
    /// Makes the cgroups, with `cpus` as the parent's cpuset and no quota yet.
    fn create(name: &str, cpus: &str) -> Result<TestCgroup, String> {
        let mounts = cgroup_mounts();
        let name = format!("corral-test-{name}-{}", std::process::id());
        let mut cgroup = TestCgroup { made: Vec::new(), procs: Vec::new(), quota: QuotaFiles::V2(PathBuf::new()) };
        let v2 = mounts.iter().find(|(point, fs_type, _)| {
            fs_type == "cgroup2"
                && fs::read_to_string(point.join("cgroup.controllers"))
                    .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"))
        });
        let has = |controller: &str| {
            mounts
                .iter()
                .find(|(_, fs_type, options)| fs_type == "cgroup" && options.split(',').any(|o| o == controller))
        };
        if let Some((root, ..)) = v2 {
            // The root is exempt from "no processes in inner cgroups"; below it the parent
            // holds no process, so its children may get controllers too.
            write(&root.join("cgroup.subtree_control"), "+cpu +cpuset")?;
            let parent = root.join(&name);
            mkdir(&mut cgroup.made, parent.clone())?;
            write(&parent.join("cpuset.cpus"), cpus)?;
            write(&parent.join("cgroup.subtree_control"), "+cpu +cpuset")?;
            mkdir(&mut cgroup.made, parent.join("inner"))?;
            cgroup.procs.push(parent.join("inner/cgroup.procs"));
            cgroup.quota = QuotaFiles::V2(parent.join("cpu.max"));
        } else if let Some((cpu_root, ..)) = has("cpu") {
            let parent = cpu_root.join(&name);
            mkdir(&mut cgroup.made, parent.clone())?;
            mkdir(&mut cgroup.made, parent.join("inner"))?;
            cgroup.procs.push(parent.join("inner/cgroup.procs"));
            cgroup.quota = QuotaFiles::V1(parent.join("cpu.cfs_quota_us"), parent.join("cpu.cfs_period_us"));
            if let Some((cpuset_root, ..)) = has("cpuset") {
                let set = cpuset_root.join(&name);
                mkdir(&mut cgroup.made, set.clone())?;
                write(&set.join("cpuset.cpus"), cpus)?;
                let mems = fs::read_to_string(cpuset_root.join("cpuset.mems")).unwrap_or_else(|_| "0".to_owned());
                write(&set.join("cpuset.mems"), mems.trim())?;
                cgroup.procs.push(set.join("cgroup.procs"));
            }
        } else {
            return Err("no cgroup hierarchy with the cpu controller is mounted (/proc/self/mountinfo)".to_owned());
        }
        Ok(cgroup)
    }

    /// Sets the parent's quota to `cpus` CPUs every 100 ms, or none.
    fn set_quota(&self, cpus: Option<f64>) -> Result<(), String> {
        let quota_us = cpus.map(|c| (c * 100_000.0).round() as u64);
        match &self.quota {
            QuotaFiles::V2(max) => {
                let text = quota_us.map_or("max 100000".to_owned(), |q| format!("{q} 100000"));
                write(max, &text)
            }
            QuotaFiles::V1(quota, period) => {
                write(period, "100000")?;
                write(quota, &quota_us.map_or("-1".to_owned(), |q| q.to_string()))
            }
        }
    }

    /// Runs `command` inside the cgroup: a shell joins it, then execs the command.
    fn run(&self, command: Command) -> Output {
        let procs: Vec<String> = self.procs.iter().map(|p| p.display().to_string()).collect();
        let mut shell = Command::new("sh");
        shell.args(["-c", r#"for f in $CORRAL_TEST_PROCS; do echo $$ > "$f" || exit 97; done; exec "$@""#, "sh"]);
        shell.arg(command.get_program()).args(command.get_args());
        for (name, value) in command.get_envs() {
            match value {
                Some(value) => shell.env(name, value),
                None => shell.env_remove(name),
            };
        }
        shell.env("CORRAL_TEST_PROCS", procs.join(" "));
        let output = shell.output().expect("sh runs");
        assert_ne!(
            output.status.code(),
            Some(97),
            "cannot join the cgroup: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            // Every process run inside has been waited for; a cgroup empties at once.
            let _ = fs::remove_dir(dir);
        }
    }
}

/// The first two CPUs this test may use, as a cpuset list.
fn two_cpus() -> Option<String> {
    let cpus = corral_cores::allowed_cpus().expect("affinity");
    (cpus.len() >= 2).then(|| format!("{},{}", cpus[0], cpus[1]))
}

/// `corral reserve --json --seconds 0` inside the cgroup: (cores taken, stderr).
fn reserve(host: &Host, cgroup: &TestCgroup, device: &str, env: &[(&str, &str)]) -> (Vec<u64>, String) {
    let mut command = host.corral(&["reserve", "--json", "--seconds", "0", "--device", device]);
    command.envs(env.iter().copied());
    let output = cgroup.run(command);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "reserve on {device} failed: {stderr}");
    let line: Value = serde_json::from_slice(&output.stdout).expect("reserve --json prints JSON");
    let cores = line["cores"].as_array().expect("cores").iter().map(|c| c.as_u64().expect("index")).collect();
    (cores, stderr)
}

fn ls(host: &Host, cgroup: &TestCgroup, device: &str) -> (Value, String) {
    let json = cgroup.run(host.corral(&["ls", "--json", "--device", device]));
    let table = cgroup.run(host.corral(&["ls", "--device", device]));
    let listing = serde_json::from_slice(&json.stdout).expect("ls --json prints JSON");
    (listing, String::from_utf8_lossy(&table.stdout).into_owned())
}

/// The cores of a listing with a CPU in the cpuset `cpus`.
fn inside<'a>(listing: &'a Value, cpus: &str) -> Vec<&'a Value> {
    let in_set = |cpu: &Value| cpus.split(',').any(|c| c.parse::<u64>().ok() == cpu.as_u64());
    let cores = listing["cores"].as_array().expect("cores");
    cores.iter().filter(|core| core["cpus"].as_array().expect("cpus").iter().any(in_set)).collect()
}

#[test]
fn a_quota_of_one_and_a_half_cpus_over_two_takes_one_core_and_max_takes_two() {
    let host = Host::new();
    let Some(cpus) = two_cpus() else {
        return cannot_run("cgroups", "a 2-CPU cpuset needs 2 CPUs; this process may use fewer");
    };
    let cgroup = match TestCgroup::create("quota", &cpus).and_then(|c| c.set_quota(Some(1.5)).map(|()| c)) {
        Ok(cgroup) => cgroup,
        Err(reason) => return cannot_run("cgroups", reason),
    };

    // cpu:logical: one core per CPU, so floor(1.5) = 1 core of the 2.
    let (cores, stderr) = reserve(&host, &cgroup, "cpu:logical", &[]);
    assert_eq!(cores.len(), 1, "{stderr}");
    assert!(
        stderr.contains("the CPU quota is 1.5 CPUs (") && stderr.contains("taking 1 core by default, not all 2"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().filter(|l| l.contains("CPU quota")).count(), 1, "said once: {stderr}");
    // A count is capped too; an explicit set past the quota is taken, with a warning.
    let (cores, stderr) = reserve(&host, &cgroup, "cpu:logical", &[("NEURON_RT_NUM_CORES", "2")]);
    assert_eq!(cores.len(), 1, "{stderr}");
    assert!(stderr.contains("NEURON_RT_NUM_CORES=2 is capped to 1 core"), "{stderr}");
    let (logical, _) = ls(&host, &cgroup, "cpu:logical");
    let visible: Vec<String> = inside(&logical, &cpus).iter().map(|core| core["index"].to_string()).collect();
    let (cores, stderr) = reserve(&host, &cgroup, "cpu:logical", &[("CORRAL_VISIBLE_CORES", &visible.join(","))]);
    assert_eq!(cores.len(), 2, "{stderr}");
    assert!(stderr.contains("enough for 1 core") && stderr.contains("the kernel will throttle it"), "{stderr}");

    // cpu: a core is a physical core with its SMT siblings; floor(1.5 ÷ CPUs per core), at least 1.
    let (listing, table) = ls(&host, &cgroup, "cpu");
    assert_eq!(listing["quota_cpus"], 1.5, "{listing}");
    let inside = inside(&listing, &cpus);
    let per_core =
        listing["cores"].as_array().expect("cores").iter().map(|c| c["cpus"].as_array().expect("cpus").len()).max();
    let expected = ((1.5 / per_core.expect("some core") as f64).floor() as usize).max(1).min(inside.len());
    let (cores, stderr) = reserve(&host, &cgroup, "cpu", &[]);
    assert_eq!(cores.len(), expected, "{stderr}");
    assert!(table.lines().next().is_some_and(|l| l.starts_with("cpu (CPU quota 1.5: ")), "{table}");
    if per_core == Some(1) {
        assert_eq!(cores.len(), 1, "no SMT: 1 core of the 2");
    }

    // `max`: no quota, every core of the cpuset, nothing said.
    cgroup.set_quota(None).expect("the quota could be set, so it can be cleared");
    let (cores, stderr) = reserve(&host, &cgroup, "cpu:logical", &[]);
    assert_eq!(cores.len(), 2, "{stderr}");
    assert!(!stderr.contains("CPU quota"), "{stderr}");
    let (cores, _) = reserve(&host, &cgroup, "cpu", &[]);
    assert_eq!(cores.len(), inside.len());
    let (listing, table) = ls(&host, &cgroup, "cpu");
    assert_eq!(listing["quota_cpus"], Value::Null, "{listing}");
    assert!(table.starts_with("cpu: "), "{table}");
}
