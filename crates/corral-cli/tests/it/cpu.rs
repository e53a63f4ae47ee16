//! The real `cpu` device seen from processes whose affinity was narrowed before corral
//! started (`corral launch`, `taskset`): one host-wide numbering, each process owning and
//! pinned to the cores inside its affinity (SPEC §2).

use std::os::unix::process::CommandExt;

use nix::{sched::CpuSet, unistd::Pid};
use serde_json::Value;

use super::{Holder, Host, cannot_run, held};

/// The `cpu` cores as `ls` lists them: (index, CPUs).
fn numbering(listing: &Value) -> Vec<(u64, Vec<u64>)> {
    let cores = listing["cores"].as_array().expect("cores");
    let cpus = |core: &Value| core["cpus"].as_array().expect("cpus").iter().map(|c| c.as_u64().expect("cpu")).collect();
    cores.iter().map(|core| (core["index"].as_u64().expect("index"), cpus(core))).collect()
}

/// Narrows `command`'s affinity to `cpus` between fork and exec, as `taskset -c` does.
fn pin(command: &mut std::process::Command, cpus: &[u64]) {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu as usize).expect("a CPU of this host fits in a CpuSet");
    }
    // SAFETY: sched_setaffinity is an async-signal-safe syscall; the set was built before fork.
    unsafe {
        command.pre_exec(move || Ok(nix::sched::sched_setaffinity(Pid::from_raw(0), &set)?));
    }
}

fn allowed_list(pid: u64) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")).expect("Cpus_allowed_list");
    line.split_whitespace().last().expect("value").to_owned()
}

fn list(cpus: &[u64]) -> String {
    corral_cores::format_cpu_list(&cpus.iter().map(|&c| c as usize).collect::<Vec<_>>())
}

/// This host's `cpu` cores; on a host too small for the test, the test fails, or with
/// `CORRAL_TEST_SKIP=two-cores`, `None` (the caller returns).
fn two_cores(host: &Host) -> Option<Vec<(u64, Vec<u64>)>> {
    let cores = numbering(&host.ls("cpu"));
    let affinity = corral_cores::allowed_cpus().expect("affinity");
    let usable = cores.iter().filter(|(_, cpus)| cpus.iter().any(|&c| affinity.contains(&(c as usize)))).count();
    if usable < 2 {
        cannot_run("two-cores", format!("this host lets the tests use {usable} cpu core(s); the test needs 2"));
        return None;
    }
    Some(cores)
}

#[test]
fn launched_copies_on_real_cores_each_own_and_are_pinned_to_their_core() {
    let host = Host::new();
    let Some(cores) = two_cores(&host) else { return };
    let corral = env!("CARGO_BIN_EXE_corral");
    // Regression: the copy on nc1 saw a one-core device (numbered from its narrowed
    // affinity) and could not adopt its lease.
    let args = ["launch", "--device", "cpu", "--num-cores", "1", "--instances", "2", "--", corral, "reserve", "--json"];
    let mut launched = Holder::start(host.corral(&args)).expect("launch starts both copies");
    let second = launched.next_line();
    let mut copies: Vec<Value> = [launched.first_line.as_str(), second.trim_end()]
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    copies.sort_by_key(|copy| copy["cores"][0].as_u64());
    let mut owners = Vec::new();
    for (index, copy) in copies.iter().enumerate() {
        assert_eq!(copy["adopted"], true, "{copy}");
        assert_eq!(copy["cores"], serde_json::json!([index]), "{copy}");
        let cpus = &cores[index].1;
        assert_eq!(copy["cpus"], serde_json::json!(cpus), "{copy}");
        let pid = copy["pid"].as_u64().expect("pid");
        assert_eq!(allowed_list(pid), list(cpus), "copy {index} runs on its core's CPUs only");
        owners.push((index as u64, pid));
    }
    assert_eq!(held(&host.ls("cpu")), owners);
    // SIGTERM to the launcher reaches both copies (a SIGKILL would leave them running).
    launched.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, stderr) = launched.wait();
    assert_eq!(code, 0, "the copies release their cores and exit 0 on SIGTERM: {stderr}");
    for (_, pid) in owners {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "copy {pid} ended with its launcher");
    }
}

#[test]
fn a_pinned_process_takes_only_the_cores_of_its_affinity_and_sees_one_numbering() {
    let host = Host::new();
    let Some(cores) = two_cores(&host) else { return };
    let nc1 = &cores[1].1;
    // No settings: like `taskset -c <nc1's CPUs> corral reserve`.
    let mut command = host.corral(&["reserve", "--json", "--device", "cpu"]);
    pin(&mut command, nc1);
    let holder = Holder::start(command).expect("a pinned process takes its core");
    assert_eq!(holder.cores(), [1]);
    assert_eq!(holder.info()["cpus"], serde_json::json!(nc1));

    // `ls` from a process pinned elsewhere numbers the cores the same way.
    let mut ls = host.corral(&["ls", "--json", "--device", "cpu"]);
    pin(&mut ls, &cores[0].1);
    let output = ls.output().expect("ls runs");
    let pinned_listing: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(numbering(&pinned_listing), cores);
    assert_eq!(held(&pinned_listing), [(1, holder.pid() as u64)]);

    // A count that does not fit inside the affinity says so, and takes nothing.
    let mut command = host.corral(&["reserve", "--seconds", "0", "--device", "cpu", "--num-cores", "2"]);
    pin(&mut command, &cores[0].1);
    let output = command.output().expect("reserve runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("inside this process's CPU affinity (nc0)"), "{stderr}");
    assert_eq!(held(&host.ls("cpu")), [(1, holder.pid() as u64)]);

    // An explicit request may still name any core of the device.
    let mut command = host.corral(&["reserve", "--json", "--device", "cpu", "--visible-cores", "0"]);
    pin(&mut command, nc1);
    let explicit = Holder::start(command).expect("explicit cores are taken");
    assert_eq!(explicit.cores(), [0]);
}

#[test]
fn monitor_and_top_see_a_pinned_server_on_its_real_core() {
    let host = Host::new();
    let Some(cores) = two_cores(&host) else { return };
    let repo = tempfile::tempdir().expect("dir");
    super::serve::put_sim(repo.path(), "tick", 2);
    let repo_arg = repo.path().to_str().expect("utf-8");
    let args = ["serve", "--model-repository", repo_arg, "--device", "cpu", "--http-port", "0", "--grpc-port", "0"];
    let mut command = host.corral(&[&args[..], &["--metrics-port", "0"]].concat());
    pin(&mut command, &cores[1].1);
    command.env("CORRAL_PROCESS_TAG", "pinned");
    command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut server = command.spawn().expect("serve starts");
    // Its publication sits beside its first CPU's lock file, named by the host-wide numbering.
    let live = host.dir.path().join("cpu").join(format!("cpu{}.live", cores[1].1[0]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::metadata(&live).map_or(0, |m| m.len()) == 0 {
        assert!(std::time::Instant::now() < deadline, "no publication at {}", live.display());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = host.run(&["monitor", "--device", "cpu", "--period", "0.3", "--count", "1"], &[]);
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    let runtime = report["neuron_runtime_data"].as_array().expect("list").iter().find(|r| r["pid"] == server.id());
    let runtime = runtime.unwrap_or_else(|| panic!("the server is in the report: {report:#}"));
    assert_eq!(runtime["neuron_runtime_tag"], "pinned");
    let in_use: Vec<&String> =
        runtime["report"]["neuroncore_counters"]["neuroncores_in_use"].as_object().expect("cores").keys().collect();
    assert_eq!(in_use, ["1"], "nc1, the core of its affinity: {runtime:#}");
    let subgraph = &runtime["report"]["memory_used"]["loaded_models"][0]["subgraphs"]["sg_00"];
    assert_eq!(subgraph["neuroncore_index"], 1, "{runtime:#}");
    let top = host.run(&["top", "--once", "--device", "cpu", "--interval", "0.2"], &[]);
    let text = String::from_utf8_lossy(&top.stdout);
    let nc1 = text.lines().find(|l| l.starts_with("nc1 ")).unwrap_or_default();
    assert!(nc1.contains(&server.id().to_string()) && nc1.contains("tick@1[0]"), "{text}");
    let _ = server.kill();
    let _ = server.wait();
}
