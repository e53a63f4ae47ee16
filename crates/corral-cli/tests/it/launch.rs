//! `corral launch`: the environment each copy sees, pinning, exit statuses, signal
//! forwarding, and release of each copy's cores when it exits.

use expect_test::expect;
use nix::sys::signal::Signal;

use super::{Holder, Host, held};

#[test]
fn each_copy_gets_its_own_cores_and_environment() {
    let host = Host::new();
    let script = "echo copy=$CORRAL_INSTANCE/$CORRAL_INSTANCES device=$CORRAL_DEVICE visible=$CORRAL_VISIBLE_CORES \
                  neuron=$NEURON_RT_VISIBLE_CORES omp=$OMP_NUM_THREADS mkl=$MKL_NUM_THREADS num=${CORRAL_NUM_CORES-unset}";
    let output = host.run(
        &["launch", "--device", "sim:inf1.6xlarge", "--instances", "3", "--", "sh", "-c", script],
        &[("CORRAL_NUM_CORES", "4")],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut lines: Vec<&str> = std::str::from_utf8(&output.stdout).expect("utf-8").lines().collect();
    lines.sort();
    expect![[r#"
        copy=0/3 device=sim:inf1.6xlarge visible=0-3 neuron=0-3 omp=4 mkl=4 num=unset
        copy=1/3 device=sim:inf1.6xlarge visible=4-7 neuron=4-7 omp=4 mkl=4 num=unset
        copy=2/3 device=sim:inf1.6xlarge visible=8-11 neuron=8-11 omp=4 mkl=4 num=unset"#]]
    .assert_eq(&lines.join("\n"));
    assert_eq!(held(&host.ls("sim:inf1.6xlarge")), []);
}

#[test]
fn visible_cores_split_evenly_between_copies() {
    let host = Host::new();
    let output = host.run(
        &[
            "launch",
            "--device",
            "sim:8",
            "--visible-cores",
            "2-5",
            "--instances",
            "2",
            "--",
            "sh",
            "-c",
            "echo $CORRAL_VISIBLE_CORES",
        ],
        &[],
    );
    let mut lines: Vec<&str> = std::str::from_utf8(&output.stdout).expect("utf-8").lines().collect();
    lines.sort();
    assert_eq!(lines, ["2-3", "4-5"]);
    let output =
        host.run(&["launch", "--device", "sim:8", "--visible-cores", "2-4", "--instances", "2", "--", "true"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("do not split evenly into 2 copies"));
}

#[test]
fn copies_are_pinned_to_their_cpus() {
    let host = Host::new();
    let allowed = corral_cores::allowed_cpus().expect("affinity");
    let output = host.run(
        &[
            "launch",
            "--device",
            "cpu:logical",
            "--num-cores",
            "1",
            "--",
            "grep",
            "Cpus_allowed_list",
            "/proc/self/status",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let line = String::from_utf8_lossy(&output.stdout);
    assert_eq!(line.split_whitespace().last(), Some(allowed[0].to_string().as_str()), "{line}");
}

#[test]
fn the_exit_status_is_the_commands() {
    let host = Host::new();
    let status = |args: &[&str]| host.run(&[&["launch", "--device", "sim:4", "--"], args].concat(), &[]).status.code();
    assert_eq!(status(&["sh", "-c", "exit 7"]), Some(7));
    assert_eq!(status(&["true"]), Some(0));
    assert_eq!(status(&["sh", "-c", "kill -9 $$"]), Some(128 + 9));
    assert_eq!(status(&["/nonexistent/cmd"]), Some(127));
    // Of several copies, the first to fail decides; copy 1 fails at once, copy 0 later.
    let script = "if [ $CORRAL_INSTANCE = 0 ]; then sleep 0.3; exit 3; else exit 5; fi";
    let output = host.run(&["launch", "--device", "sim:4", "--instances", "2", "--", "sh", "-c", script], &[]);
    assert_eq!(output.status.code(), Some(5));
}

#[test]
fn signals_are_forwarded_to_every_copy() {
    let host = Host::new();
    let script = r#"trap 'kill $s; exit 42' TERM; sleep 60 & s=$!; echo ready; wait"#;
    let command = host.corral(&["launch", "--device", "sim:4", "--instances", "2", "--", "sh", "-c", script]);
    let mut launcher = Holder::start(command).expect("launch starts");
    assert_eq!(launcher.next_line(), "ready\n");
    assert_eq!(held(&host.ls("sim:4")).len(), 4);
    launcher.signal(Signal::SIGTERM);
    let (code, stderr) = launcher.wait();
    assert_eq!(code, 42, "{stderr}");
    assert_eq!(held(&host.ls("sim:4")), []);
}

#[test]
fn a_killed_copy_releases_its_cores_while_others_run() {
    let host = Host::new();
    let script = "echo $$ $CORRAL_INSTANCE; exec sleep 60";
    let command =
        host.corral(&["launch", "--device", "sim:4", "--num-cores", "2", "--instances", "2", "--", "sh", "-c", script]);
    let mut launcher = Holder::start(command).expect("launch starts");
    let mut copies = [launcher.first_line.clone(), launcher.next_line().trim_end().to_owned()];
    copies.sort_by_key(|line| line.split(' ').nth(1).map(str::to_owned));
    let pid_of = |line: &str| line.split(' ').next().expect("pid").parse::<i32>().expect("pid");
    let (copy0, copy1) = (pid_of(&copies[0]), pid_of(&copies[1]));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(copy0), Signal::SIGKILL).expect("kill");
    // Copy 0's cores come free while copy 1 runs on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while held(&host.ls("sim:4")).len() != 2 {
        assert!(std::time::Instant::now() < deadline, "copy 0's cores were not released");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(held(&host.ls("sim:4")), [(2, copy1 as u64), (3, copy1 as u64)]);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(copy1), Signal::SIGTERM).expect("kill");
    let (code, _) = launcher.wait();
    assert_eq!(code, 128 + 9, "the first copy to fail decides the status");
}

#[test]
fn launch_needs_free_cores_for_every_copy_or_starts_none() {
    let host = Host::new();
    let _holder = host.reserve(&["--device", "sim:4", "--visible-cores", "3"], &[]);
    let output = host.run(&["launch", "--device", "sim:4", "--num-cores", "2", "--instances", "2", "--", "true"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(
            "error: requested 2 consecutive cores (--num-cores 2 (copy 1)) on sim:4; longest free run is nc2 (1)"
        ),
        "{stderr}"
    );
    assert_eq!(held(&host.ls("sim:4")).len(), 1, "copy 0's cores were rolled back");
}
