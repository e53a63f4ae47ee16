//! Registry behaviour seen through the API: error messages, records, links, permissions.

use std::os::unix::fs::{PermissionsExt, symlink};

use corral_cores::{AcquireError, CoreRange, RegistryError, Request, Sources, longest_free_run};
use expect_test::expect;

use super::registry;

/// Replaces this process's owner description, which varies by run, with `<me>`.
fn redact(message: &str, registry: &corral_cores::Registry) -> String {
    let mut message = message.to_owned();
    for core in registry.status().expect("status") {
        for owner in core.owners {
            message = message.replace(&owner.to_string(), "<me>");
        }
    }
    message
}

#[test]
fn busy_error_names_the_request_the_free_run_and_the_holders() {
    let (_dir, registry) = registry("sim:8");
    let _first = registry.acquire(&Request::num(6)).expect("6 of 8 free");
    let request = Sources { num: Some(corral_cores::Source::new("CORRAL_NUM_CORES", "4")), ..Sources::default() }
        .resolve()
        .expect("valid");
    let err = registry.acquire(&request).expect_err("only 2 free");
    expect![[r#"
        requested 4 consecutive cores (CORRAL_NUM_CORES=4) on sim:8; longest free run is nc6-nc7 (2); nc0-nc5 held by <me>
        hint: wait for those processes to end or stop them, or ask for fewer cores"#]]
    .assert_eq(&redact(&err.to_string(), &registry));

    let err = registry.acquire(&Request::visible(CoreRange::new(5, 2))).expect_err("nc5 held");
    expect![[r#"
        requested nc5-nc6 (cores 5-6) on sim:8; longest free run is nc6-nc7 (2); nc5 held by <me>
        hint: pick other cores, or stop the process that holds them"#]]
    .assert_eq(&redact(&err.to_string(), &registry));
    assert!(matches!(err, AcquireError::Busy { .. }));
}

#[test]
fn owner_names_pid_command_and_time() {
    let (_dir, registry) = registry("sim:2");
    let _lease = registry.acquire(&Request::num(1)).expect("free");
    let status = registry.status().expect("status");
    let owner = &status[0].owners[0];
    assert_eq!(owner.pid, std::process::id());
    assert!(owner.command.contains("it-"), "command {:?} names the test binary", owner.command);
    let text = owner.to_string();
    assert!(text.starts_with(&format!("pid {} (", std::process::id())) && text.ends_with(" UTC"), "{text}");
    assert!(status[1].is_free());
}

#[test]
fn release_frees_at_once_and_clears_the_record() {
    let (dir, registry) = registry("sim:4");
    let lease = registry.acquire(&Request::all()).expect("free");
    let record = std::fs::read_to_string(dir.path().join("sim-4/nc2.lock")).expect("lock file");
    assert!(record.contains(&format!("\"pid\":{}", std::process::id())), "{record}");
    drop(lease);
    assert_eq!(std::fs::read_to_string(dir.path().join("sim-4/nc2.lock")).expect("lock file"), "");
    assert_eq!(longest_free_run(&registry.status().expect("status")), Some(CoreRange::new(0, 4)));
    let _again = registry.acquire(&Request::all()).expect("all free again");
}

#[test]
fn a_record_without_a_held_lock_is_ignored_and_overwritten() {
    let (dir, registry) = registry("sim:2");
    // A process that died without cleaning up left a record naming a live pid (ours, even).
    let stale = format!(
        r#"{{"pid":{},"start_ticks":0,"command":"ghost","since_unix_ms":0,"device":"sim:2","cores":"0"}}"#,
        std::process::id()
    );
    std::fs::create_dir_all(dir.path().join("sim-2")).expect("dir");
    std::fs::write(dir.path().join("sim-2/nc0.lock"), stale + "\n").expect("write");
    assert!(registry.status().expect("status")[0].is_free());
    let lease = registry.acquire(&Request::num(1)).expect("stale record does not block");
    assert_eq!(lease.cores().to_string(), "nc0");
    let record = std::fs::read_to_string(dir.path().join("sim-2/nc0.lock")).expect("lock file");
    assert!(!record.contains("ghost"), "{record}");
}

/// Regression: lock files are 0666, and a record's `cores` went through a parser that expanded
/// ranges before checking them, so any local user could make `corral ls` (and every busy-core
/// message) allocate tens of GB and abort by writing `"cores":"0-4000000000"`.
#[test]
fn a_hostile_record_on_a_held_core_cannot_crash_readers() {
    let (dir, registry) = registry("sim:2");
    let _lease = registry.acquire(&Request::num(1)).expect("free");
    for cores in ["0-4000000000", "0-18446744073709551615", "4000000000", "x"] {
        let hostile = format!(
            r#"{{"pid":{},"start_ticks":0,"command":"evil","since_unix_ms":0,"device":"sim:2","cores":"{cores}","models":[["m"]]}}"#,
            std::process::id()
        );
        std::fs::write(dir.path().join("sim-2/nc0.lock"), hostile + "\n").expect("the file is world-writable");
        let status = registry.status().expect("status");
        assert_eq!(status[0].owners[0].command, "evil", "{cores}");
        let busy = registry.acquire(&Request::all()).expect_err("nc0 is held");
        assert!(busy.to_string().contains("nc0 held by pid"), "{cores}: {busy}");
    }
    // Garbage, or a record past the size cap: the holder comes from the kernel's lock table,
    // marked as such, and nothing more is read.
    for planted in ["{\"pid\": 1, \"cores\"".to_owned(), format!("{{\"command\":\"{}\"}}", "x".repeat(1 << 20))] {
        std::fs::write(dir.path().join("sim-2/nc0.lock"), planted).expect("the file is world-writable");
        let status = registry.status().expect("status");
        let owner = &status[0].owners[0];
        assert_eq!(owner.pid, std::process::id());
        assert!(owner.command.ends_with("(unreadable record)"), "{}", owner.command);
    }
}

#[test]
fn planted_links_are_refused_not_followed() {
    let (dir, registry) = registry("sim:2");
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep me").expect("write");
    symlink(&target, dir.path().join("sim-2/nc0.lock")).expect("symlink");
    let err = registry.acquire(&Request::num(1)).expect_err("link refused");
    assert!(matches!(err, AcquireError::Registry(RegistryError::Symlink { .. })), "{err:?}");
    assert!(err.to_string().contains("never follows links"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep me");

    // A device folder planted as a link is refused too.
    let other = tempfile::tempdir().expect("dir");
    symlink(other.path(), dir.path().join("sim-3")).expect("symlink");
    let device = corral_cores::Device::open("sim:3".parse().expect("valid")).expect("opens");
    let err = corral_cores::Registry::open(device, dir.path()).expect_err("link refused");
    assert!(matches!(err, RegistryError::Symlink { .. }), "{err:?}");
}

#[test]
fn folders_and_files_are_shared_by_all_users() {
    let (dir, registry) = registry("sim:1");
    let _lease = registry.acquire(&Request::num(1)).expect("free");
    let mode = |p: &str| std::fs::metadata(dir.path().join(p)).expect("exists").permissions().mode() & 0o7777;
    assert_eq!(mode("sim-1"), 0o1777);
    assert_eq!(mode("sim-1/nc0.lock"), 0o666);
}

#[test]
fn groups_are_cut_from_the_leased_cores() {
    let (_dir, registry) = registry("sim:inf1.6xlarge");
    let _other = registry.acquire(&Request::num(1)).expect("free");
    let request = Request { groups: Some(vec![2, 4, 3, 4]), ..Request::all() };
    let lease = registry.acquire(&request).expect("13 of 15 free");
    assert_eq!(lease.cores().to_string(), "nc1-nc13");
    let groups: Vec<String> = lease.groups().iter().map(|g| g.to_string()).collect();
    assert_eq!(groups, ["nc0-nc1", "nc2-nc5", "nc6-nc8", "nc9-nc12"]);
}

#[test]
fn cpu_device_pins_to_allowed_cpus() {
    let (_dir, registry) = registry("cpu:logical");
    let allowed = corral_cores::allowed_cpus().expect("affinity");
    let lease = registry.acquire(&Request::num(1)).expect("a cpu is free");
    assert_eq!(lease.cpus(), vec![allowed[0]]);
    // `cpu` and `cpu:logical` lock the same host CPUs.
    let device = corral_cores::Device::open("cpu".parse().expect("valid")).expect("opens");
    let physical = corral_cores::Registry::open(device, registry.path().parent().expect("parent")).expect("opens");
    assert!(!physical.status().expect("status")[0].is_free());
}

/// Regression: `/proc/locks` is read in page-sized passes and skipped held entries while
/// other locks came and went, so `status` reported a held core as free.
#[test]
fn status_sees_held_cores_while_other_locks_churn() {
    let (_dir, registry) = registry("sim:4");
    let _held = registry.acquire(&Request::num(4)).expect("free");
    let (_other_dir, other) = super::registry("sim:64");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let leases: Vec<_> = (0..32).filter_map(|_| other.acquire(&Request::num(2)).ok()).collect();
                drop(leases);
            }
        });
        let misses = (0..300).filter(|_| registry.status().expect("status").iter().any(|c| c.is_free())).count();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(misses, 0, "held cores were reported free");
    });
}

#[test]
fn a_publication_counts_only_while_its_publisher_holds_the_core() {
    let (dir, registry) = registry("sim:4");
    let lease =
        registry.acquire(&Request::visible(corral_cores::parse_core_list("1-2").expect("valid"))).expect("free");
    let pid = std::process::id();
    let publication = corral_cores::Publication {
        pid,
        start_ticks: corral_cores::process_start_ticks(pid).expect("alive"),
        seq: 3,
        cores: vec![corral_cores::LiveCore { core: 1, executions: 5, ..Default::default() }],
        ..Default::default()
    };
    lease.publish_live(&publication);
    let entries = registry.live(&registry.status().expect("status"));
    assert_eq!(entries.len(), 1, "one file, beside the lease's first core");
    assert_eq!((entries[0].core, entries[0].owner.pid), (1, pid));
    assert_eq!(entries[0].publication.as_ref().expect("trusted"), &publication);

    // Claiming another start time (a reused pid) is not trusted.
    lease.publish_live(&corral_cores::Publication { start_ticks: 1, ..publication.clone() });
    assert!(registry.live(&registry.status().expect("status")).is_empty());

    // The lease ends: the file is emptied, and even a planted copy beside a free core counts for nothing.
    lease.publish_live(&publication);
    let kept = std::fs::read(dir.path().join("sim-4/nc1.live")).expect("written");
    drop(lease);
    assert_eq!(std::fs::metadata(dir.path().join("sim-4/nc1.live")).expect("stays").len(), 0);
    std::fs::write(dir.path().join("sim-4/nc1.live"), kept).expect("world-writable");
    assert!(registry.live(&registry.status().expect("status")).is_empty());
}

/// A 4-CPU `cpu` device (no SMT unless `smt`) under a quota of `quota_us` per 100 ms, with
/// its registry in a temp folder. The lock files are real; nothing is pinned.
fn quota_registry(smt: bool, quota_us: u64) -> (tempfile::TempDir, corral_cores::Registry) {
    use corral_cores::{CgroupVersion, CpuQuota, Device, DeviceSpec};
    let siblings = |cpu: usize| if smt { vec![cpu & !1, cpu | 1] } else { vec![cpu] };
    let quota =
        CpuQuota { quota_us, period_us: 100_000, cgroup: "/sys/fs/cgroup/pod".into(), version: CgroupVersion::V2 };
    let device = Device::from_cpus(DeviceSpec::Cpu { logical: !smt }, &[0, 1, 2, 3], &[0, 1, 2, 3], siblings)
        .with_quota(Some(quota));
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = corral_cores::Registry::open(device, dir.path()).expect("registry");
    (dir, registry)
}

#[test]
fn a_cpu_quota_caps_the_default_and_a_count() {
    // 2.5 CPUs over 4 one-CPU cores: 2 cores, the lowest free run.
    let (_dir, registry) = quota_registry(false, 250_000);
    assert_eq!(registry.device().quota_cores(), Some(2));
    let default = registry.acquire(&Request::all()).expect("free");
    assert_eq!(default.cores().to_string(), "nc0-nc1");
    let count = registry.acquire(&Request::num(2)).expect("nc2-nc3 free");
    assert_eq!(count.cores().to_string(), "nc2-nc3");
    drop((default, count));
    let capped = registry.acquire(&Request::num(4)).expect("capped to 2");
    assert_eq!(capped.cores().to_string(), "nc0-nc1");
    // An explicit set past the quota is taken (with a warning).
    drop(capped);
    let visible = registry.acquire(&Request::visible(CoreRange::new(0, 4))).expect("free");
    assert_eq!(visible.len(), 4);
    drop(visible);
    // With holes in what is free (nc1 held), the capped default takes free cores that are
    // not a run rather than failing.
    let hole = registry.acquire(&Request::visible(CoreRange::new(1, 1))).expect("free");
    let _nc3 = registry.acquire(&Request::visible(CoreRange::new(3, 1))).expect("free");
    let default = registry.acquire(&Request::all()).expect("nc0 and nc2 are free");
    assert_eq!(default.cores().to_string(), "nc0,nc2");
    drop(hole);
}

#[test]
fn the_quota_counts_cpus_per_core() {
    // 2-way SMT: 4 CPUs are 2 cores. 3 CPUs feed floor(3 / 2) = 1 core; 1 CPU still gets 1.
    let (_dir, registry) = quota_registry(true, 300_000);
    assert_eq!((registry.device().len(), registry.device().cpus_per_core()), (2, 2));
    assert_eq!(registry.device().quota_cores(), Some(1));
    let lease = registry.acquire(&Request::all()).expect("free");
    assert_eq!((lease.cores().to_string(), lease.cpus()), ("nc0".to_owned(), vec![0, 1]));
    // A capped default is a count: a second process takes the next free core.
    let second = registry.acquire(&Request::all()).expect("nc1 free");
    assert_eq!(second.cores().to_string(), "nc1");
}

#[test]
fn join_takes_a_free_core_after_the_others_and_a_released_one_back_at_its_number() {
    let (_dir, registry) = registry("sim:4");
    let lease = registry.acquire(&Request::visible(CoreRange::new(1, 2))).expect("nc1-nc2 free");
    let other = registry.acquire(&Request::visible(CoreRange::new(3, 1))).expect("nc3 free");
    assert!(matches!(lease.join(3), Err(corral_cores::JoinError::Busy(3))), "nc3 is the other lease's");
    assert!(matches!(lease.join(9), Err(corral_cores::JoinError::NoSuchCore(9))));
    assert_eq!(lease.join(0).expect("nc0 is free"), 2, "a new core is numbered after the others");
    assert_eq!(lease.globals(), [1, 2, 0]);
    assert_eq!(lease.cores().to_string(), "nc0-nc2");
    let label = |models: &[&str]| models.iter().map(|m| vec![m.to_string()]).collect::<Vec<_>>();
    let chosen = corral_cores::ModelEngine {
        engine: "openvino".to_owned(),
        reason: Some("median 1.000 ms on openvino, 2.000 ms on onnxruntime".to_owned()),
        medians_us: [("onnxruntime".to_owned(), 2000), ("openvino".to_owned(), 1000)].into(),
    };
    let engines = [("a".to_owned(), chosen.clone())].into();
    lease.publish_models(&label(&["a[0]", "a[1]", "b[0]"]), &engines);
    let status = registry.status().expect("status");
    let models: Vec<Vec<String>> = status[..3].iter().map(|c| c.owners[0].models.clone()).collect();
    assert_eq!(models, [["b[0]"], ["a[0]"], ["a[1]"]], "each core's record names its own instances");
    assert_eq!(status[0].owners[0].engines.get("a"), Some(&chosen), "and each model's engine, read back whole");

    assert!(lease.release(0), "nc1 (process core 0) given back");
    assert!(registry.status().expect("status")[1].is_free());
    assert_eq!(lease.join(1).expect("nc1 is free again"), 0, "a released core comes back at its number");
    assert!(lease.is_held(0) && !registry.status().expect("status")[1].is_free());
    drop(other);
    assert_eq!(lease.join(3).expect("nc3 is free now"), 3);
    assert_eq!(lease.join(3).expect("held already"), 3);
    drop(lease);
    assert_eq!(longest_free_run(&registry.status().expect("status")), Some(CoreRange::new(0, 4)), "all released");
}
