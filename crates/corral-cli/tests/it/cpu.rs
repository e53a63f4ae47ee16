//! The real `cpu` device seen from processes whose affinity was narrowed before corral
//! started (`corral launch`, `taskset`): one host-wide numbering, each process owning and
//! pinned to the cores inside its affinity (SPEC §2).

use std::os::unix::process::CommandExt;

use nix::{sched::CpuSet, unistd::Pid};
use serde_json::Value;

use super::{Holder, Host, held};

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

/// This host's `cpu` cores, or `None` (with a note) on a host too small for the test.
fn two_cores(host: &Host) -> Option<Vec<(u64, Vec<u64>)>> {
    let cores = numbering(&host.ls("cpu"));
    let affinity = corral_cores::allowed_cpus().expect("affinity");
    let usable = cores.iter().filter(|(_, cpus)| cpus.iter().any(|&c| affinity.contains(&(c as usize)))).count();
    if usable < 2 {
        eprintln!("this host lets the tests use {usable} cpu core(s); the test needs 2");
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
