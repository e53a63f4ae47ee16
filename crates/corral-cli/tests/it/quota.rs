//! CPU quotas and cpusets on real cgroups (SPEC §2): a corral process in a child cgroup whose
//! parent has a CFS quota of 1.5 CPUs over a 2-CPU cpuset takes 1 core by default, and 2 once
//! the quota is `max`; a server whose cpuset shrinks under it moves its instances off the core
//! that left and releases that core, takes it back when the cpuset grows, and gives up and
//! takes back a core as its quota falls and rises, answering every call meanwhile; a Python
//! model's instance moves with its live stub re-pinned (same process, every thread). The
//! cgroups are made in the host's own cgroup file system (v2 where it carries the cpu
//! controller, else v1), so these tests run as root; where the kernel refuses, they fail with
//! its reason unless `CORRAL_TEST_SKIP` lists `cgroups`.

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
    /// The `cpuset.cpus` file of the cpuset the process runs under.
    cpuset: Option<PathBuf>,
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
        let mut cgroup =
            TestCgroup { made: Vec::new(), procs: Vec::new(), quota: QuotaFiles::V2(PathBuf::new()), cpuset: None };
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
            cgroup.cpuset = Some(parent.join("cpuset.cpus"));
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
                cgroup.cpuset = Some(set.join("cpuset.cpus"));
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

    /// Changes the cpuset to `cpus` under the processes running there.
    fn set_cpus(&self, cpus: &str) -> Result<(), String> {
        let file = self.cpuset.as_ref().ok_or("no cgroup hierarchy with the cpuset controller is mounted")?;
        write(file, cpus)
    }

    /// Starts `command` inside the cgroup (its stderr piped), as [`TestCgroup::run`] does.
    fn spawn(&self, command: Command) -> std::process::Child {
        self.shell(command).stdin(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().expect("sh")
    }

    /// Runs `command` inside the cgroup: a shell joins it, then execs the command.
    fn run(&self, command: Command) -> Output {
        let output = self.shell(command).output().expect("sh runs");
        assert_ne!(
            output.status.code(),
            Some(97),
            "cannot join the cgroup: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `sh -c` that joins the cgroup (exit 97 if it cannot), then execs `command`.
    fn shell(&self, command: Command) -> Command {
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
        shell
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

/// A 2-CPU cpuset cgroup named after `name` and the CPUs it holds; `None` where the host cannot
/// make one and `CORRAL_TEST_SKIP` lists `cgroups` (else the test fails with the reason).
fn cpuset_cgroup(name: &str) -> Option<(String, TestCgroup)> {
    let Some(cpus) = two_cpus() else {
        cannot_run("cgroups", "a 2-CPU cpuset needs 2 CPUs; this process may use fewer");
        return None;
    };
    match TestCgroup::create(name, &cpus) {
        Ok(cgroup) if cgroup.cpuset.is_some() => Some((cpus, cgroup)),
        Ok(_) => {
            cannot_run("cgroups", "no cgroup hierarchy with the cpuset controller is mounted");
            None
        }
        Err(reason) => {
            cannot_run("cgroups", reason);
            None
        }
    }
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

    // cpu: a core is a physical core with its SMT siblings. 1.5 CPUs pay for one core either
    // way: without SMT one 1-CPU core of the two, with 2-CPU cores none whole, and a quota
    // always leaves at least one.
    let (listing, table) = ls(&host, &cgroup, "cpu");
    assert_eq!(listing["quota_cpus"], 1.5, "{listing}");
    let inside = inside(&listing, &cpus);
    let (cores, stderr) = reserve(&host, &cgroup, "cpu", &[]);
    assert_eq!(cores.len(), 1, "{stderr}");
    assert!(table.lines().next().is_some_and(|l| l.starts_with("cpu (CPU quota 1.5: 1 core by default)")), "{table}");

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

#[test]
fn a_default_server_follows_its_cpuset_and_quota_both_ways_without_a_failed_call() {
    let host = Host::new();
    let Some((cpus, cgroup)) = cpuset_cgroup("cpuset") else { return };
    // `add` (x + y) with one instance per core of the cpuset.
    let repo = tempfile::tempdir().expect("dir");
    let model = repo.path().join("add");
    fs::create_dir_all(model.join("1")).expect("mkdir");
    let site = corral_engine_ort::project_site_packages().expect("./scripts/setup creates .venv");
    fs::copy(site.join("onnx/backend/test/data/node/test_add/model.onnx"), model.join("1/model.onnx")).expect("copy");
    fs::write(model.join("config.toml"), "[placement]\ncount = \"all\"\n").expect("config");
    let args = ["serve", "--model-repository", repo.path().to_str().expect("utf-8"), "--device", "cpu"];
    let ports = ["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "-v"];
    let mut serve =
        Server { child: cgroup.spawn(host.corral(&[&args[..], &ports[..]].concat())), log: Default::default() };
    let (http, stderr) = serve.address();
    // The address comes before the repository's models load: calls start once `add` is ready.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while super::serve::http(&http, "GET", "/v2/models/add/ready", b"").0 != 200 {
        assert!(std::time::Instant::now() < deadline, "`add` never became ready: {}", serve.stderr());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let listing = |host: &Host| -> Value {
        let out = host.corral(&["ls", "--json", "--device", "cpu"]).output().expect("ls");
        serde_json::from_slice(&out.stdout).expect("ls --json")
    };
    let owned = |listing: &Value| -> Vec<u64> {
        let cores = listing["cores"].as_array().expect("cores");
        cores.iter().filter(|c| !c["owner"].is_null()).map(|c| c["index"].as_u64().expect("index")).collect()
    };
    let before = listing(&host);
    let first = inside(&before, &cpus).iter().map(|c| c["index"].as_u64().expect("index")).collect::<Vec<_>>();
    assert_eq!(owned(&before).len(), 2, "the server holds both cores of its cpuset: {before}");

    // Calls from two threads while the cpuset shrinks to its second CPU.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (http, stop, answered) = (http.clone(), stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let values: Vec<String> = (0..60).map(|i| format!("{i}.5")).collect();
                let tensor = |name: &str| {
                    format!(r#"{{"name":"{name}","shape":[3,4,5],"datatype":"FP32","data":[{}]}}"#, values.join(","))
                };
                let body = format!(r#"{{"inputs":[{},{}]}}"#, tensor("x"), tensor("y"));
                let (mut calls, mut problems) = (0, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (status, answer) = super::serve::http(&http, "POST", "/v2/models/add/infer", body.as_bytes());
                    calls += 1;
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let sum: Option<Vec<f64>> = serde_json::from_str::<Value>(&answer).ok().and_then(|v| {
                        v["outputs"][0]["data"].as_array().map(|d| d.iter().take(3).filter_map(Value::as_f64).collect())
                    });
                    if status != 200 || sum.as_deref() != Some(&[1.0, 3.0, 5.0][..]) {
                        problems.push(format!("{status}: {answer}"));
                    }
                }
                (calls, problems)
            })
        })
        .collect();
    // A window is its calls, not a time: `more` calls answered from now on (a loaded machine
    // only makes the wait longer).
    let calls_answered = |more: u64, during: &str| {
        let target = answered.load(std::sync::atomic::Ordering::Relaxed) + more;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while answered.load(std::sync::atomic::Ordering::Relaxed) < target {
            assert!(std::time::Instant::now() < deadline, "no {more} calls answered {during}: {}", serve.stderr());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    calls_answered(20, "before the cpuset shrinks");
    let second = cpus.split(',').nth(1).expect("two CPUs").to_owned();
    cgroup.set_cpus(&second).expect("the cpuset shrinks");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let after = loop {
        let now = listing(&host);
        if owned(&now).len() == 1 {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the core that left was never released: {now}\n{}",
            serve.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(owned(&after), [first[1]], "only the core still in the cpuset is held: {after}");

    // The cpuset grows back: the core that left is taken again (under its old number).
    cgroup.set_cpus(&cpus).expect("the cpuset grows");
    let held = |count: usize, why: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let now = listing(&host);
            if owned(&now).len() == count {
                return now;
            }
            assert!(std::time::Instant::now() < deadline, "{why}: {now}\n{}", serve.stderr());
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let back = held(2, "the core that came back was never taken");
    assert_eq!(owned(&back), first, "{back}");
    // A quota of one CPU: the higher core leaves (its instance moves) and is released; no
    // quota: it is taken again.
    cgroup.set_quota(Some(1.0)).expect("quota");
    let capped = held(1, "the core past the quota was never released");
    assert_eq!(owned(&capped), [first[0]], "the lower core stays: {capped}");
    cgroup.set_quota(None).expect("no quota");
    held(2, "the core the quota pays for again was never taken");

    calls_answered(20, "once the core is back");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut calls, mut problems) = (0, Vec::new());
    for caller in callers {
        let (n, p) = caller.join().expect("caller");
        calls += n;
        problems.extend(p);
    }
    assert!(
        calls > 0 && problems.is_empty(),
        "{} of {calls} calls failed: {:?}",
        problems.len(),
        &problems[..problems.len().min(3)]
    );
    let config = super::serve::http(&http, "GET", "/v2/models/add/config", b"").1;
    assert!(config.contains(r#""count":1"#), "one instance, moved with its cores (the autopilot is off): {config}");
    let log = serve.stderr();
    for said in ["left this process's CPUs", "released", "joined this process", "the CPU quota is now"] {
        assert!(log.contains(said), "the log says `{said}`: {stderr}{log}");
    }
}

#[test]
fn a_python_instance_moves_with_its_cpuset_by_re_pinning_its_live_stub() {
    let host = Host::new();
    let Some((cpus, cgroup)) = cpuset_cgroup("python-move") else { return };
    // `where` (python_repo) answers its stub's pid and every thread's Cpus_allowed_list; one
    // instance here.
    let repo = tempfile::tempdir().expect("dir");
    let model = repo.path().join("where");
    fs::create_dir_all(model.join("1")).expect("mkdir");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/python_repo/where");
    fs::copy(source.join("1/model.py"), model.join("1/model.py")).expect("copy");
    let config = fs::read_to_string(source.join("config.pbtxt")).expect("config");
    fs::write(model.join("config.pbtxt"), config.replace("count: 2", "count: 1")).expect("config");
    let args = ["serve", "--model-repository", repo.path().to_str().expect("utf-8"), "--device", "cpu"];
    let ports = ["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "-v"];
    let mut command = host.corral(&[&args[..], &ports[..]].concat());
    command.env("CORRAL_PYTHON", super::serve::python(".venv"));
    let mut serve = Server { child: cgroup.spawn(command), log: Default::default() };
    let (http, _) = serve.address();
    let call = || -> Option<(u64, String)> {
        let body = br#"{"inputs":[{"name":"X","shape":[2],"datatype":"FP32","data":[1,2]}]}"#;
        let (status, answer) = super::serve::http(&http, "POST", "/v2/models/where/infer", body);
        let answer: Value = serde_json::from_str(&answer).ok().filter(|_| status == 200)?;
        let output = |name: &str| answer["outputs"].as_array()?.iter().find(|o| o["name"] == name).cloned();
        Some((output("PID")?["data"][0].as_u64()?, output("CPUS")?["data"][0].as_str()?.to_owned()))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (pid, on) = loop {
        if let Some(answer) = call() {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "`where` never answered: {}", serve.stderr());
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let other = cpus.split(',').find(|c| *c != on).expect("the instance runs on one CPU of the two").to_owned();
    assert_ne!(on, other, "every thread of the stub on its instance's one CPU: {on}");

    let logged = |said: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !serve.stderr().contains(said) {
            assert!(std::time::Instant::now() < deadline, "the log never said `{said}`: {}", serve.stderr());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };

    // Its CPU leaves the cpuset: the instance moves to the other, the same stub re-pinned.
    cgroup.set_cpus(&other).expect("the cpuset shrinks");
    logged("cores left: move");
    let log = serve.stderr();
    assert!(log.contains(&format!("Python stub pid {pid} moved")), "the live stub moved, no new one: {log}");
    assert_eq!(call(), Some((pid, other.clone())), "{}", serve.stderr());
    // The CPU comes back: the kernel gives a thread back the affinity it last asked for (the
    // old CPU; the cpuset only narrowed it), so threads still on the new one were pinned
    // there by the move.
    cgroup.set_cpus(&cpus).expect("the cpuset grows");
    logged("joined this process");
    assert_eq!(call(), Some((pid, other.clone())), "{}", serve.stderr());
}

/// A `corral serve` child, killed when dropped.
struct Server {
    child: std::process::Child,
    /// Its stderr after the address line.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// The HTTP address from the `corral serve: HTTP …` line, and the stderr before it; the
    /// rest of stderr keeps being collected for [`Server::stderr`].
    fn address(&mut self) -> (String, String) {
        use std::io::BufRead;
        let pipe = self.child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut head = String::new();
            let mut lines = std::io::BufReader::new(pipe).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                head += &format!("{line}\n");
                if line.starts_with("corral serve: HTTP") {
                    let _ = tx.send(Ok(head.clone()));
                    break;
                }
            }
            let _ = tx.send(Err(head));
            for line in lines.map_while(Result::ok) {
                log.lock().expect("lock").push_str(&format!("{line}\n"));
            }
        });
        match rx.recv_timeout(std::time::Duration::from_secs(120)).expect("serve starts in time") {
            Ok(head) => {
                let line = head.lines().last().expect("the address line");
                (line.split_whitespace().nth(3).expect("HTTP address").to_owned(), head)
            }
            Err(head) => panic!("corral serve did not start:\n{head}"),
        }
    }

    fn stderr(&self) -> String {
        self.log.lock().expect("lock").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
