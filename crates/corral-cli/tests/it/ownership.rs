//! Exclusive ownership across real processes (SPEC §3): counts, explicit cores, errors that
//! name the holder, SIGKILL, simultaneous starts, and inherited leases.

use nix::sys::signal::Signal;

use super::{Holder, Host, held};

#[test]
fn two_processes_asking_for_two_cores_get_consecutive_pairs() {
    let host = Host::new();
    let first = host.reserve(&["--device", "sim:8"], &[("CORRAL_NUM_CORES", "2")]);
    let second = host.reserve(&["--device", "sim:8"], &[("NEURON_RT_NUM_CORES", "2")]);
    assert_eq!(first.cores(), [0, 1]);
    assert_eq!(second.cores(), [2, 3]);
    let listing = host.ls("sim:8");
    let (a, b) = (u64::from(first.pid()), u64::from(second.pid()));
    assert_eq!(held(&listing), [(0, a), (1, a), (2, b), (3, b)]);
}

#[test]
fn visible_cores_take_exactly_those() {
    let host = Host::new();
    let holder = host.reserve(&[], &[("CORRAL_DEVICE", "sim:8"), ("NEURON_RT_VISIBLE_CORES", "4-5")]);
    assert_eq!(holder.cores(), [4, 5]);
    assert_eq!(holder.info()["device"], "sim:8");
}

#[test]
fn visible_cores_need_not_be_consecutive() {
    // What Ray hands an actor after fragmentation.
    let host = Host::new();
    let holder = host.reserve(&[], &[("CORRAL_DEVICE", "sim:4"), ("NEURON_RT_VISIBLE_CORES", "3,1")]);
    assert_eq!(holder.cores(), [1, 3]);
    let pid = u64::from(holder.pid());
    assert_eq!(held(&host.ls("sim:4")), [(1, pid), (3, pid)]);
    // The cores between are free for others, and a request overlapping the set waits its turn.
    let between = host.reserve(&["--device", "sim:4", "--num-cores", "1"], &[]);
    assert_eq!(between.cores(), [0]);
    let output = host.run(&["reserve", "--seconds", "0", "--device", "sim:4", "--visible-cores", "2-3"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(
            "error: requested nc2-nc3 (--visible-cores 2-3) on sim:4; longest free run is nc2 (1); nc3 held by pid"
        ),
        "{stderr}"
    );
}

#[test]
fn held_cores_fail_with_the_holders_pid_and_command() {
    let host = Host::new();
    let holder = host.reserve(&["--device", "sim:8", "--num-cores", "6"], &[]);
    let output = host.run(&["reserve", "--seconds", "0", "--device", "sim:8"], &[("CORRAL_VISIBLE_CORES", "4-5")]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "error: requested nc4-nc5 (CORRAL_VISIBLE_CORES=4-5) on sim:8; longest free run is nc6-nc7 (2); nc4-nc5 held by pid {} ({} reserve --json --device sim:8 --num-cores 6) since ",
        holder.pid(),
        env!("CARGO_BIN_EXE_corral"),
    );
    assert!(stderr.starts_with(&expected), "{stderr}\nexpected prefix: {expected}");
    assert!(stderr.contains("\nhint: pick other cores"), "{stderr}");
}

#[test]
fn sigkill_of_a_holder_frees_its_cores_at_once() {
    let host = Host::new();
    let holder = host.reserve(&["--device", "sim:8"], &[]);
    assert_eq!(holder.cores(), (0..8).collect::<Vec<_>>());
    assert!(
        host.run(&["reserve", "--seconds", "0", "--device", "sim:8", "--num-cores", "1"], &[]).status.code() == Some(1)
    );
    holder.signal(Signal::SIGKILL);
    let (code, _) = holder.wait();
    assert_eq!(code, 128 + 9);
    // No clean-up ran: the kernel released the locks, and the stale records are ignored.
    assert_eq!(held(&host.ls("sim:8")), []);
    let again = host.reserve(&["--device", "sim:8"], &[]);
    assert_eq!(again.cores(), (0..8).collect::<Vec<_>>());
}

#[test]
fn sixteen_processes_started_at_once_get_distinct_cores() {
    let host = Host::new();
    let starts: Vec<_> = (0..16)
        .map(|_| {
            let mut command = host.corral(&["reserve", "--json", "--device", "sim:16"]);
            command.env("CORRAL_NUM_CORES", "1");
            command
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let holders: Vec<Holder> = starts
        .into_iter()
        .map(|mut child| {
            let stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
            let (line, stdout) = super::read_line(stdout);
            super::stdout_line_or_stderr(child, line, stdout).expect("every start succeeds")
        })
        .collect();
    let mut cores: Vec<u64> = holders.iter().flat_map(Holder::cores).collect();
    cores.sort_unstable();
    assert_eq!(cores, (0..16).collect::<Vec<_>>());
}

#[test]
fn a_lease_adopted_by_a_child_is_not_counted_twice() {
    let host = Host::new();
    let corral = env!("CARGO_BIN_EXE_corral");
    let launch = host.corral(&["launch", "--device", "sim:8", "--num-cores", "2", "--", corral, "reserve", "--json"]);
    let launched = Holder::start(launch).expect("launch starts reserve");
    let child = launched.info();
    assert_eq!(child["adopted"], true);
    assert_eq!(child["cores"], serde_json::json!([0, 1]));
    let child_pid = child["pid"].as_u64().expect("pid");
    // The registry names the child, once per core, and the other six cores are free.
    assert_eq!(held(&host.ls("sim:8")), [(0, child_pid), (1, child_pid)]);
    let rest = host.reserve(&["--device", "sim:8", "--num-cores", "6"], &[]);
    assert_eq!(rest.cores(), [2, 3, 4, 5, 6, 7]);
    drop(rest);
    // Ending the child ends the launch, and its cores are free again.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child_pid as i32), Signal::SIGTERM).expect("signal");
    let (code, stderr) = launched.wait();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(held(&host.ls("sim:8")), []);
}

#[test]
fn a_child_cannot_take_more_than_its_inherited_lease() {
    let host = Host::new();
    let corral = env!("CARGO_BIN_EXE_corral");
    let output = host.run(
        &[
            "launch",
            "--device",
            "sim:8",
            "--num-cores",
            "2",
            "--",
            corral,
            "reserve",
            "--seconds",
            "0",
            "--num-cores",
            "3",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(
            "error: cannot adopt the lease in CORRAL_LEASE (nc0-nc1 on sim:8): --num-cores 3 asks for cores outside it"
        ),
        "{stderr}"
    );
    assert_eq!(held(&host.ls("sim:8")), []);
}

#[test]
fn a_forged_lease_ticket_is_refused() {
    let host = Host::new();
    let ticket = r#"{"device":"sim:8","cores":"0","slots":[["nc0.lock",0]]}"#;
    let output = host.run(&["reserve", "--seconds", "0", "--device", "sim:8"], &[("CORRAL_LEASE", ticket)]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot adopt the lease") && stderr.contains("descriptor 0 is not"), "{stderr}");
    let output = host.run(&["reserve", "--seconds", "0", "--device", "sim:8"], &[("CORRAL_LEASE", "garbage")]);
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: CORRAL_LEASE=garbage is not a lease ticket"));
}

#[test]
fn malformed_settings_fail_before_anything_is_taken() {
    let host = Host::new();
    // Each malformed value comes with a valid request beside it: a runtime that took cores
    // before checking everything would have opened (and locked) lock files.
    for (name, value, message, valid) in [
        (
            "CORRAL_VISIBLE_CORES",
            "0-1,1",
            "error: CORRAL_VISIBLE_CORES=0-1,1 is not valid: core 1 is listed twice",
            ("CORRAL_NUM_CORES", "2"),
        ),
        (
            "NEURON_RT_NUM_CORES",
            "x",
            "error: NEURON_RT_NUM_CORES=x is not valid: `x` is not a whole number",
            ("CORRAL_VISIBLE_CORES", "0-1"),
        ),
        (
            "CORRAL_VISIBLE_CORES",
            "7-9",
            "error: CORRAL_VISIBLE_CORES=7-9 asks for nc9, but sim:8 has 8 cores (nc0-nc7)",
            ("CORRAL_NUM_CORES", "2"),
        ),
    ] {
        let output = host.run(&["reserve", "--seconds", "0", "--device", "sim:8"], &[(name, value), valid]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}={value}: {stderr}");
        assert!(stderr.starts_with(message), "{name}={value}: {stderr}");
        // Taking a core starts with opening its lock file: none may exist.
        let slots = std::fs::read_dir(host.dir.path().join("sim-8")).into_iter().flatten().flatten();
        let opened: Vec<String> =
            slots.map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("nc")).collect();
        assert!(opened.is_empty(), "{name}={value} opened {opened:?} before failing");
    }
    let output = host.run(&["reserve", "--seconds", "0"], &[("CORRAL_DEVICE", "tpu")]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: CORRAL_DEVICE=tpu is not valid\n  caused by: unknown device `tpu`"), "{stderr}");
    assert_eq!(held(&host.ls("sim:8")), []);
}

#[test]
fn a_lock_folder_this_user_cannot_write_is_named_with_what_to_do() {
    let host = Host::new();
    let theirs = host.dir.path().join("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    let lock_dir = theirs.join("corral");
    let mut command = host.corral(&["reserve", "--device", "sim:2", "--seconds", "0"]);
    command.env("CORRAL_LOCK_DIR", &lock_dir);
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        // Root writes anywhere: run as nobody against root's 0755 folder instead.
        use std::os::unix::process::CommandExt;
        std::fs::set_permissions(&theirs, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        command.uid(65534).gid(65534);
    } else {
        std::fs::set_permissions(&theirs, std::os::unix::fs::PermissionsExt::from_mode(0o555)).expect("chmod");
    }
    let output = command.output().expect("reserve runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    expect_test::expect![[r#"
        error: cannot prepare the lock folder LOCKS: Permission denied (os error 13)
        hint: this user may not write there: ask its owner to make it shared (mode 1777, as corral creates it), or point CORRAL_LOCK_DIR at a folder this user can write"#]]
    .assert_eq(stderr.trim_end().replace(&*lock_dir.to_string_lossy(), "LOCKS").as_str());
}
