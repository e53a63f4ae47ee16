//! Execution rules (SPEC §6): per-thread contexts, input validation, timeouts, unload under
//! traffic, async calls, the replica a call takes on shared cores, and a stress run with shared
//! cores, gangs and reloads.

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Barrier,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use corral_engine::{DataType, Tensor, TensorData};
use corral_runtime::{
    CoreSpan, InferError, LoadError, ModelDef, RuntimeSettings, Where, cores_context, multicore_context,
};
use proptest::prelude::*;

use super::{input, replay::Held, runtime, runtime_with, sim};

#[test]
fn contexts_are_per_thread() {
    let (_dir, runtime) = runtime("sim:8", None, None);
    let barrier = Barrier::new(2);
    thread::scope(|s| {
        let a = s.spawn(|| {
            let _ctx = cores_context(6, 2).expect("valid");
            barrier.wait(); // both contexts are active at once
            runtime.load(ModelDef::sim("a", sim(0, 0))).expect("load").instances()
        });
        let b = s.spawn(|| {
            let _ctx = multicore_context();
            barrier.wait();
            runtime.load(ModelDef::sim("b", sim(0, 0)).cores(4)).expect("load").instances()
        });
        assert_eq!(a.join().expect("a"), [CoreSpan::new(6, 1), CoreSpan::new(7, 1)]);
        assert_eq!(b.join().expect("b"), [CoreSpan::new(0, 4), CoreSpan::new(4, 4)]);
    });
    // Contexts end with their guard; nesting restores the outer one.
    let outer = cores_context(5, -1).expect("valid");
    {
        let _inner = cores_context(1, -1).expect("valid");
        assert_eq!(runtime.load(ModelDef::sim("c", sim(0, 0))).expect("load").instances(), [CoreSpan::new(1, 1)]);
    }
    assert_eq!(runtime.load(ModelDef::sim("d", sim(0, 0))).expect("load").instances(), [CoreSpan::new(5, 1)]);
    drop(outer);
    let least_used = runtime.load(ModelDef::sim("e", sim(0, 0))).expect("load").instances();
    assert_eq!(least_used, [CoreSpan::new(0, 1)], "nc0, nc2, nc3 and nc4 hold one instance each");
}

#[test]
fn wrong_inputs_fail_that_call_and_the_model_keeps_serving() {
    let (_dir, runtime) = runtime("sim:2", None, None);
    let model = runtime.load(ModelDef::sim("m", sim(0, 0))).expect("load");
    let wrong: Vec<(Vec<Tensor>, &str)> = vec![
        (
            vec![Tensor::new("z", vec![1, 4], TensorData::F32(vec![0.0; 4]))],
            "model `m`: unknown input `z`; the model's inputs are x",
        ),
        (
            vec![Tensor::new("x", vec![1, 4], TensorData::I64(vec![0; 4]))],
            "model `m`: input `x` must be FP32, got INT64",
        ),
        (
            vec![Tensor::new("x", vec![2, 4], TensorData::F32(vec![0.0; 8]))],
            "model `m`: input `x` must have shape [1, 4], got [2, 4]",
        ),
        (vec![], "model `m`: expected 1 inputs (x), got 0"),
    ];
    for (inputs, message) in wrong {
        let err = model.infer(inputs).expect_err("rejected");
        assert!(matches!(err, InferError::Input { .. }));
        assert_eq!(err.to_string(), message);
    }
    let ok = model.infer(input()).expect("still serving");
    assert_eq!(ok.outputs[0].shape, [1, 2]);
    assert_eq!(ok.outputs[0].datatype(), DataType::F32);
    let stats = model.stats();
    assert_eq!((stats.requests, stats.failures, stats.executions), (5, 4, 1));
}

#[test]
fn a_call_that_cannot_start_in_time_fails_with_a_timeout() {
    // Margins a loaded machine cannot eat: the first call has half a second to start (it
    // starts at once on an idle core), the second waits behind its 1.5 s.
    let settings = RuntimeSettings { exec_timeout: Some(Duration::from_millis(500)), ..RuntimeSettings::default() };
    let (_dir, runtime) = runtime_with("sim:1", None, None, settings);
    let slow = runtime.load(ModelDef::sim("slow", sim(1500, 0))).expect("load");
    let first = slow.submit(input()).expect("queued");
    let second = slow.submit(input()).expect("queued");
    assert!(first.wait().is_ok(), "the first call runs");
    let err = second.wait().expect_err("the second waited 1.5 s behind it");
    assert!(matches!(err, InferError::Timeout { .. }), "{err}");
    assert!(err.to_string().starts_with("model `slow` could not start within 0.5 s"), "{err}");
}

#[test]
fn unloading_finishes_accepted_calls_and_refuses_new_ones() {
    let (_dir, runtime) = runtime("sim:2", None, None);
    let model = runtime.load(ModelDef::sim("m", sim(20, 0))).expect("load");
    let accepted: Vec<_> = (0..5).map(|_| model.submit(input()).expect("queued")).collect();
    runtime.unload("m").expect("unload");
    for reply in accepted {
        reply.wait().expect("accepted calls complete");
    }
    assert!(matches!(model.infer(input()), Err(InferError::Unloaded { .. })));
    assert!(runtime.model("m").is_none());
    assert!(runtime.unload("m").is_err());
    let again = runtime.load(ModelDef::sim("m", sim(0, 0))).expect("load again");
    again.infer(input()).expect("serves again");
}

#[test]
fn replace_serves_from_the_old_model_until_the_new_one_is_ready() {
    let (_dir, runtime) = runtime("sim:4", None, None);
    let old =
        runtime.load(ModelDef::sim("m", sim(20, 0)).at(Where::Cores { start: Some(0), count: None })).expect("load");
    let accepted: Vec<_> = (0..3).map(|_| old.submit(input()).expect("queued")).collect();
    let moved = ModelDef::sim("m", sim(0, 0)).at(Where::Cores { start: Some(2), count: Some(2) });
    let replacement = runtime.replace(moved).expect("replace");
    assert_eq!(replacement.model.instances(), [CoreSpan::new(2, 1), CoreSpan::new(3, 1)]);
    assert!(replacement.model.warning().is_none(), "placed as if the old model were gone");
    assert_eq!(runtime.model("m").expect("loaded").instances(), replacement.model.instances());
    assert_eq!(runtime.layout().placed().len(), 2, "only the new instances are in the layout");
    old.infer(input()).expect("the old handle still answers until the replacement is dropped");
    let new = replacement.model.clone();
    drop(replacement);
    for reply in accepted {
        reply.wait().expect("accepted calls complete");
    }
    assert!(matches!(old.infer(input()), Err(InferError::Unloaded { .. })));
    new.infer(input()).expect("the new one serves");

    // A replacement that cannot be placed leaves the model as it was.
    let too_wide = ModelDef::sim("m", sim(0, 0)).cores(8);
    assert!(matches!(runtime.replace(too_wide), Err(LoadError::Placement { .. })));
    assert!(matches!(runtime.replace(ModelDef::sim("other", sim(0, 0))), Err(LoadError::NotFound { .. })));
    assert_eq!(runtime.model("m").expect("still loaded").instances(), new.instances());
    new.infer(input()).expect("still serves");
}

/// Regression: `infer_async` queued with `send_timeout`, so a server's tokio worker could
/// block for the whole exec timeout on a full queue.
#[test]
fn a_full_queue_refuses_async_calls_at_once() {
    let held = Held::default();
    let settings =
        RuntimeSettings { queue_len_max: 1, exec_timeout: Some(Duration::from_secs(3600)), ..Default::default() };
    let (_dir, runtime) = runtime_with("sim:1", None, None, held.settings(settings));
    let _release = held.release_all_on_drop();
    let model = runtime.load(ModelDef::onnx("m", "/held.onnx")).expect("load");
    // The first call runs until the test releases it, so the queue stays full for as long as
    // the next lines take, however loaded the machine.
    let running = model.submit(Held::input(0)).expect("runs");
    held.wait_started(&BTreeSet::from([0]), "the first call");
    let queued = model.submit(Held::input(1)).expect("fills the one-slot queue");
    let refused = model.try_submit(Held::input(2)).err().expect("no room");
    assert!(matches!(refused, InferError::QueueFull { queue_len_max: 1, .. }), "{refused}");
    let refused_async = block_on(model.infer_async(Held::input(2))).expect_err("no room");
    assert!(matches!(refused_async, InferError::QueueFull { .. }), "{refused_async}");
    // A blocking submit waits for room instead, and gets in once the first call ends. It is
    // counted in flight before it waits (3: running, queued, waiting), so the release comes
    // while it waits.
    let waiter = thread::spawn({
        let model = model.clone();
        move || model.submit(Held::input(3)).expect("room came")
    });
    while model.queue_depths() != [3] {
        thread::sleep(Duration::from_millis(1));
    }
    assert!(!waiter.is_finished(), "a full queue keeps a blocking submit waiting");
    held.release(0);
    let waited = waiter.join().expect("the waiting caller");
    for (call, reply) in [(1, queued), (3, waited)] {
        held.release(call);
        reply.wait().expect("accepted calls complete");
    }
    running.wait().expect("the first call completes");
    assert_eq!(held.started(), [0, 1, 3], "the refused calls never ran");
}

#[test]
fn a_call_goes_to_an_idle_replica_whose_cores_no_other_model_holds() {
    // On simulated cores, and on this machine's first two (real threads pinned there).
    for device in ["sim:2", "cpu"] {
        idle_replica_on_free_cores(device);
    }
}

fn idle_replica_on_free_cores(device: &str) {
    let held = Held::default();
    // A call that waits for a core fails after 2 s: a pick of the busy core shows as an error.
    let settings = RuntimeSettings { exec_timeout: Some(Duration::from_secs(2)), ..Default::default() };
    let (_dir, runtime) = runtime_with(device, Some("2"), None, held.settings(settings));
    let _release = held.release_all_on_drop();
    let other = runtime.load(ModelDef::onnx("other", "/held.onnx").at(Where::Cores { start: Some(0), count: Some(1) }));
    let other = other.expect("load");
    let model = runtime.load(ModelDef::sim("m", sim(0, 0)).at(Where::Cores { start: Some(0), count: Some(2) }));
    let model = model.expect("load");
    // The other model executes on nc0 until released: `m`'s replica there is idle (nothing of
    // `m` in flight) but its core is not, so every call takes the replica on nc1, the first
    // (whose turn it is) included.
    let running = other.submit(Held::input(0)).expect("runs");
    held.wait_started(&BTreeSet::from([0]), "the other model's call");
    for call in 0..4 {
        let answer = model.infer(input()).unwrap_or_else(|e| panic!("{device}: call {call}: {e}"));
        assert_eq!(answer.cores.first, 1, "{device}: call {call}");
    }
    held.release(0);
    running.wait().expect("the other model's call completes");
    // nc0 free again: the turns take both replicas.
    let cores: BTreeSet<usize> = (0..4).map(|_| model.infer(input()).expect("runs").cores.first).collect();
    assert_eq!(cores, BTreeSet::from([0, 1]), "{device}");
}

#[test]
fn a_reply_can_be_waited_on_in_slices() {
    let (_dir, runtime) = runtime("sim:1", None, None);
    // A 2 s call: its first 10 ms slices end before it whatever the machine's load.
    let model = runtime.load(ModelDef::sim("m", sim(2000, 0))).expect("load");
    let mut reply = model.submit(input()).expect("queued");
    let mut slices = 0;
    let answer = loop {
        match reply.wait_timeout(Duration::from_millis(10)) {
            Ok(answer) => break answer,
            Err(pending) => {
                slices += 1;
                reply = pending;
            }
        }
    };
    answer.expect("answered");
    assert!(slices >= 2, "a 2 s call is not answered within the first 10 ms slices ({slices})");
}

#[test]
fn async_calls_complete() {
    let (_dir, runtime) = runtime("sim:2", None, None);
    let model = runtime.load(ModelDef::sim("m", sim(5, 0)).at(Where::Multicore)).expect("load");
    let futures: Vec<_> = (0..4).map(|_| model.infer_async(input())).collect();
    for future in futures {
        let done = block_on(future).expect("async infer");
        assert_eq!(done.outputs[0].name, "y");
    }
}

/// A minimal executor: polls on the calling thread, parking until woken.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

#[test]
fn stress_shared_cores_gangs_and_reloads_never_deadlock() {
    let settings = RuntimeSettings { exec_timeout: Some(Duration::from_secs(20)), ..RuntimeSettings::default() };
    let (_dir, runtime) = runtime_with("sim:6", None, None, settings);
    let at = |start| Where::Cores { start: Some(start), count: None };
    // Gangs of 1, 2 and 3 cores overlapping on nc1-nc3, plus an unshared model.
    runtime.load(ModelDef::sim("one", sim(1, 1)).at(Where::Cores { start: Some(0), count: Some(2) })).expect("load");
    runtime.load(ModelDef::sim("two", sim(1, 1)).cores(2).at(at(1))).expect("load");
    runtime.load(ModelDef::sim("three", sim(1, 1)).cores(3).at(at(1))).expect("load");
    runtime.load(ModelDef::sim("alone", sim(1, 0)).at(at(5))).expect("load");
    let stop = AtomicBool::new(false);
    let answered = AtomicU64::new(0);
    let not_loaded = AtomicU64::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..15 {
                runtime.unload("two").expect("unload");
                runtime.load(ModelDef::sim("two", sim(1, 1)).cores(2).at(at(2))).expect("reload");
                thread::sleep(Duration::from_millis(5));
            }
            stop.store(true, Ordering::SeqCst);
        });
        for caller in 0..8 {
            let (runtime, stop, answered, not_loaded) = (&runtime, &stop, &answered, &not_loaded);
            s.spawn(move || {
                let names = ["one", "two", "three", "alone"];
                let mut i = caller;
                while !stop.load(Ordering::SeqCst) {
                    let name = names[i % names.len()];
                    i += 1;
                    let Some(model) = runtime.model(name) else {
                        not_loaded.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    match model.infer(input()) {
                        Ok(done) => {
                            assert!(done.cores.end() <= runtime.cores());
                            assert!(model.instances().contains(&done.cores));
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(InferError::Unloaded { .. }) => {
                            not_loaded.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(other) => panic!("{name}: {other}"),
                    }
                }
            });
        }
    });
    assert!(answered.load(Ordering::Relaxed) > 100, "calls were answered");
    let executions: u64 = runtime.core_stats().iter().map(|c| c.executions).sum();
    assert!(executions > 0);
    assert!(runtime.core_stats()[1..4].iter().any(|c| c.switches > 0), "shared cores switched");
}

#[test]
fn replicas_are_used_in_order_by_one_caller() {
    let (_dir, runtime) = runtime("sim:3", None, None);
    let model = runtime.load(ModelDef::sim("m", sim(0, 0)).at(Where::Multicore)).expect("load");
    let order: Vec<usize> = (0..7).map(|_| model.infer(input()).expect("infer").instance).collect();
    assert_eq!(order, [0, 1, 2, 0, 1, 2, 0]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever loads succeed, every call executes on one of its model's instances, inside
    /// the process's cores.
    #[test]
    fn executions_stay_on_owned_cores(loads in prop::collection::vec((1usize..=3, 0usize..6, prop::option::of(1usize..7)), 1..6)) {
        let (_dir, runtime) = runtime("sim:6", Some("5"), None);
        for (i, (k, start, count)) in loads.into_iter().enumerate() {
            let def = ModelDef::sim(format!("m{i}"), sim(0, 0)).cores(k).at(Where::Cores { start: Some(start), count });
            let Ok(model) = runtime.load(def) else { continue };
            for _ in 0..model.instances().len() + 1 {
                let done = model.infer(input()).expect("infer");
                prop_assert!(done.cores.end() <= runtime.cores());
                prop_assert!(model.instances().contains(&done.cores));
                prop_assert_eq!(done.cores.count, k);
            }
        }
    }
}

#[test]
fn an_elastic_model_gives_a_lone_call_every_idle_core_and_busy_cores_to_their_replicas() {
    let (_dir, runtime) = runtime("sim:4", None, None);
    let at = Where::Cores { start: Some(0), count: Some(3) };
    let elastic = runtime.load(ModelDef::sim("e", sim(20, 0)).at(at).elastic(true)).expect("loads");
    let lone = elastic.infer(input()).expect("runs");
    assert_eq!(lone.cores, CoreSpan { first: 0, count: 3 }, "a lone call spans all three idle cores");
    // Three at once: the first finds every replica idle, the others find it busy; every call
    // is answered, and a call that is not alone runs on one core.
    let replies: Vec<_> = (0..3).map(|_| elastic.submit(input()).expect("queued")).collect();
    let cores: Vec<CoreSpan> = replies.into_iter().map(|r| r.wait().expect("answered").cores).collect();
    assert!(cores[1..].iter().all(|c| c.count == 1), "{cores:?}");
    // Off by default, and left off where the replicas are not single cores.
    let plain = runtime.load(ModelDef::sim("p", sim(1, 0)).at(Where::Cores { start: Some(3), count: Some(1) }));
    assert_eq!(plain.expect("loads").infer(input()).expect("runs").cores.count, 1);
    runtime.unload("e").expect("unloads");
    let wide = ModelDef::sim("w", sim(1, 0)).cores(3).at(Where::Cores { start: Some(0), count: Some(3) });
    assert_eq!(runtime.load(wide.elastic(true)).expect("loads").infer(input()).expect("runs").cores.count, 3);
}
