//! Every example of SPEC §5.1 and §5.2: where instances land and where each call executes.

use std::{sync::Arc, thread, time::Instant};

use corral_runtime::{CoreSpan, ModelDef, Where, cores_context, group_context, multicore_context};

use super::{input, runtime, runtime_with, sim};

/// Process cores each sequential call of `model` executed on.
fn executes_on(model: &corral_runtime::Model, calls: usize) -> Vec<usize> {
    (0..calls).map(|_| model.infer(input()).expect("infer").cores.first).collect()
}

#[test]
fn example_1_default_owns_every_core_and_fills_the_least_used() {
    let (_dir, runtime) = runtime("sim:8", None, None);
    assert_eq!(runtime.cores(), 8);
    let m0 = runtime.load(ModelDef::sim("m0", sim(0, 0))).expect("load");
    let m1 = runtime.load(ModelDef::sim("m1", sim(0, 0))).expect("load");
    assert_eq!(m0.instances(), [CoreSpan::new(0, 1)]);
    assert_eq!(m1.instances(), [CoreSpan::new(1, 1)]);
    assert_eq!(runtime.global_cores().to_string(), "nc0-nc7");
}

#[test]
fn example_2_two_processes_with_two_cores_each() {
    let dir = tempfile::tempdir().expect("dir");
    let start = |_: usize| {
        let mut settings = corral_runtime::RuntimeSettings::default();
        settings.take.device = Some("sim:8".parse().expect("valid"));
        settings.take.lock_dir = Some(dir.path().to_owned());
        settings.take.explicit.num = Some(corral_cores::Source::new("NEURON_RT_NUM_CORES", "2"));
        corral_runtime::Runtime::new(settings).expect("starts")
    };
    let (first, second) = (start(0), start(1));
    for (runtime, global) in [(&first, [0, 1]), (&second, [2, 3])] {
        let m0 = runtime.load(ModelDef::sim("m0", sim(0, 0))).expect("load");
        let m1 = runtime.load(ModelDef::sim("m1", sim(0, 0))).expect("load");
        let base = runtime.global_cores().first();
        assert_eq!([base + m0.instances()[0].first, base + m1.instances()[0].first], global);
    }
}

/// A runtime on `device` that took `NEURON_RT_VISIBLE_CORES=value`.
fn visible(device: &str, value: &str) -> (tempfile::TempDir, corral_runtime::Runtime) {
    let mut settings = corral_runtime::RuntimeSettings::default();
    settings.take.explicit.visible = Some(corral_cores::Source::new("NEURON_RT_VISIBLE_CORES", value));
    runtime_with(device, None, None, settings)
}

#[test]
fn example_3_visible_cores() {
    let (_dir, runtime) = visible("sim:8", "4-5");
    let m0 = runtime.load(ModelDef::sim("m0", sim(0, 0))).expect("load");
    let m1 = runtime.load(ModelDef::sim("m1", sim(0, 0))).expect("load");
    let base = runtime.global_cores().first();
    assert_eq!([base + m0.instances()[0].first, base + m1.instances()[0].first], [4, 5]);
}

#[test]
fn example_3_visible_cores_that_are_not_consecutive() {
    let (_dir, runtime) = visible("sim:4", "1,3");
    assert_eq!(runtime.global_cores().to_string(), "nc1,nc3");
    // Process cores 0 and 1 are nc1 and nc3; a 2-core model spans both.
    let globals: Vec<usize> = runtime.core_stats().iter().map(|c| c.global).collect();
    assert_eq!(globals, [1, 3]);
    let wide = runtime.load(ModelDef::sim("wide", sim(0, 0)).cores(2)).expect("a 2-core model fits");
    assert_eq!(wide.instances(), [CoreSpan::new(0, 2)]);
    wide.infer(input()).expect("infer");
    let executions: Vec<u64> = runtime.core_stats().iter().map(|c| c.executions).collect();
    assert_eq!(executions, [1, 1], "the gang held both cores");
}

#[test]
fn example_4_manual_placement_and_round_robin() {
    let (_dir, runtime) = runtime("sim:8", Some("4"), None);
    let m1 = {
        let _ctx = cores_context(0, 2).expect("valid");
        runtime.load(ModelDef::sim("m1", sim(0, 0))).expect("load")
    };
    let m0 = {
        let _ctx = cores_context(3, -1).expect("valid");
        runtime.load(ModelDef::sim("m0", sim(0, 0))).expect("load")
    };
    assert_eq!(m0.instances(), [CoreSpan::new(3, 1)]);
    assert_eq!(m1.instances(), [CoreSpan::new(0, 1), CoreSpan::new(1, 1)]);
    assert_eq!(executes_on(&m0, 3), [3, 3, 3]);
    assert_eq!(executes_on(&m1, 5), [0, 1, 0, 1, 0]);
}

#[test]
fn example_5_multicore_replicates_and_rotates() {
    let (_dir, runtime) = runtime("sim:8", Some("8"), None);
    let m0 = {
        let _ctx = multicore_context();
        runtime.load(ModelDef::sim("m0", sim(0, 0))).expect("load")
    };
    assert_eq!(m0.instances().len(), 8);
    assert_eq!(executes_on(&m0, 9), [0, 1, 2, 3, 4, 5, 6, 7, 0]);
    let executions: Vec<u64> = m0.stats().instances.iter().map(|i| i.executions).collect();
    assert_eq!(executions, [2, 1, 1, 1, 1, 1, 1, 1]);
}

/// Loads A, B, C, D (K = 2, 4, 3, 4) at `starts`, runs `calls` concurrent calls of each
/// from its own thread, and returns the runtime and each model's execution intervals.
fn flexeg(
    starts: [usize; 4],
    calls: usize,
) -> (tempfile::TempDir, corral_runtime::Runtime, Vec<Vec<(Instant, Instant)>>) {
    let (dir, runtime) = runtime("sim:inf1.6xlarge", None, None);
    let models: Vec<_> = [("A", 2), ("B", 4), ("C", 3), ("D", 4)]
        .iter()
        .zip(starts)
        .map(|((name, k), start)| {
            let def = ModelDef::sim(*name, sim(15, 5)).cores(*k).at(Where::Cores { start: Some(start), count: None });
            Arc::new(runtime.load(def).expect("load"))
        })
        .collect();
    let intervals = thread::scope(|s| {
        let handles: Vec<_> = models
            .iter()
            .map(|model| {
                s.spawn(move || {
                    (0..calls)
                        .map(|_| {
                            let done = model.infer(input()).expect("infer");
                            (done.started, done.started + done.compute)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("caller")).collect()
    });
    (dir, runtime, intervals)
}

fn overlap(a: &[(Instant, Instant)], b: &[(Instant, Instant)]) -> bool {
    a.iter().any(|(s1, e1)| b.iter().any(|(s2, e2)| s1 < e2 && s2 < e1))
}

#[test]
fn example_6_flexeg_good_layout_runs_in_parallel() {
    let (_dir, runtime, intervals) = flexeg([0, 2, 6, 9], 6);
    let layout = runtime.layout();
    assert!(runtime.models().iter().all(|m| m.warning().is_none()), "{}", layout.render());
    assert!(runtime.core_stats().iter().all(|c| c.switches == 0));
    // Nothing shares a core, so the four models' executions overlap in time.
    assert!(overlap(&intervals[1], &intervals[2]), "B and C ran in parallel");
    assert!(overlap(&intervals[0], &intervals[3]), "A and D ran in parallel");
}

#[test]
fn example_6_flexeg_bad_layout_serialises_b_and_c_on_nc5() {
    let (_dir, runtime, intervals) = flexeg([0, 2, 5, 9], 6);
    let warnings: Vec<String> = runtime.models().iter().filter_map(|m| m.warning().map(str::to_owned)).collect();
    assert_eq!(warnings, ["C shares nc5 with B: executions there take turns and each change of model is a switch"]);
    assert!(!overlap(&intervals[1], &intervals[2]), "B and C never execute at once");
    // Core counters are added as each execution ends, before its caller is answered.
    let stats = runtime.core_stats();
    assert!(stats[5].switches >= 1, "switches are counted on the shared core");
    let switched: Vec<usize> = stats.iter().filter(|c| c.switches > 0).map(|c| c.index).collect();
    assert_eq!(switched, [5], "only nc5 switches");
    assert_eq!(stats[5].executions, 12);
}

#[test]
fn example_6_flexeg_reloads_in_another_layout_without_restart() {
    let (_dir, runtime, _) = flexeg([0, 2, 6, 9], 1);
    for name in ["A", "B", "C", "D"] {
        runtime.unload(name).expect("unload");
    }
    for (name, k, start) in [("C", 3, 0), ("A", 2, 3), ("D", 4, 5), ("B", 4, 9)] {
        let def = ModelDef::sim(name, sim(1, 0)).cores(k).at(Where::Cores { start: Some(start), count: None });
        let model = runtime.load(def).expect("reload");
        assert_eq!(model.infer(input()).expect("infer").cores, CoreSpan::new(start, k));
        assert!(model.warning().is_none());
    }
}

#[test]
fn example_7_flexeg_start_must_leave_room() {
    let (_dir, runtime) = runtime("sim:inf1.xlarge", None, None);
    for start in 0..3 {
        let def =
            ModelDef::sim(format!("x{start}"), sim(0, 0)).cores(2).at(Where::Cores { start: Some(start), count: None });
        runtime.load(def).expect("starts 0, 1, 2 fit");
    }
    let def = ModelDef::sim("x3", sim(0, 0)).cores(2).at(Where::Cores { start: Some(3), count: None });
    let err = runtime.load(def).err().expect("start 3 leaves one core");
    assert_eq!(err.to_string(), "cannot place `x3`: model needs 2 cores from nc3, process has nc0-nc3");
    assert_eq!(runtime.models().len(), 3, "the failed load disturbed nothing");
}

#[test]
fn legacy_groups_name_a_group_not_a_core() {
    let (_dir, runtime) = runtime("sim:inf1.6xlarge", None, Some("2,4,3,4"));
    assert_eq!(runtime.cores(), 13);
    let placed: Vec<CoreSpan> = [("A", 2), ("B", 4), ("C", 3), ("D", 4)]
        .iter()
        .enumerate()
        .map(|(group, (name, k))| {
            let _ctx = group_context(group);
            runtime.load(ModelDef::sim(*name, sim(0, 0)).cores(*k)).expect("load").instances()[0]
        })
        .collect();
    assert_eq!(placed, [CoreSpan::new(0, 2), CoreSpan::new(2, 4), CoreSpan::new(6, 3), CoreSpan::new(9, 4)]);
    let too_big = {
        let _ctx = group_context(0);
        runtime.load(ModelDef::sim("E", sim(0, 0)).cores(3)).err().expect("group 0 has 2 cores")
    };
    assert_eq!(too_big.to_string(), "cannot place `E`: model needs 3 cores but group 0 has 2 (nc0-nc1)");
    // Two models in one group share its cores and switch there.
    let f = {
        let _ctx = group_context(1);
        runtime.load(ModelDef::sim("F", sim(0, 0)).cores(1)).expect("load")
    };
    assert!(f.warning().expect("shares").starts_with("F shares nc2 with B"));
    runtime.model("B").expect("loaded").infer(input()).expect("B");
    f.infer(input()).expect("F");
    assert_eq!(runtime.core_stats()[2].switches, 1);
}
