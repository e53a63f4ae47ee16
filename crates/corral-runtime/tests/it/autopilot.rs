//! The autopilot through the runtime on simulated devices (instant sessions, exact timing) with
//! a short interval: cores follow the load between models without a failed call, bounds hold,
//! a preparation that fails leaves the layout as it was, a held instance (a live sequence)
//! is not retired. Conditions are waited for with generous deadlines; nothing asserts a time.
//! A window in which nothing may happen is measured in the controller's looks, counted by
//! the starts it tries and a [`Flaky`] engine refuses, never in milliseconds: a starved
//! controller makes the window longer, not empty.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use corral_engine::{
    Engine, EngineError, ModelSource, Prepared, Session, SessionPlacement, Sessions, Tensor, TensorSpec,
};
use corral_runtime::{Model, ModelDef, Runtime, RuntimeSettings, Where};

use super::{input, runtime_with, sim};

fn settings() -> RuntimeSettings {
    RuntimeSettings {
        autopilot: Some(true),
        autopilot_interval: Some(Duration::from_millis(50)),
        ..RuntimeSettings::default()
    }
}

/// Waits (up to 60 s) until `done` holds, failing with `what` and the last state.
#[track_caller]
fn wait_until(what: &str, mut done: impl FnMut() -> bool, state: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened: {}", state());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `threads` callers of `model` until `stop`; counts failures.
fn drive(
    model: &Model,
    threads: usize,
    stop: &Arc<AtomicBool>,
    failed: &Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let (model, stop, failed) = (model.clone(), stop.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if model.infer(input()).is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect()
}

#[test]
fn cores_follow_the_load_between_three_models_without_a_failed_call() {
    let (_dir, runtime) = runtime_with("sim:12", None, None, settings());
    let models: Vec<Model> =
        ["a", "b", "c"].iter().map(|name| runtime.load(ModelDef::sim(*name, sim(20, 2))).expect("loads")).collect();
    let counts = || models.iter().map(|m| m.instances().len()).collect::<Vec<_>>();
    let failed = Arc::new(AtomicU64::new(0));
    for hot in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let callers = drive(&models[hot], 8, &stop, &failed);
        wait_until(
            &format!("model {hot} growing to most of the cores while the others keep their min"),
            || {
                let n = counts();
                n[hot] >= 6 && n.iter().enumerate().all(|(i, &c)| i == hot || c == 1)
            },
            || format!("{:?}", counts()),
        );
        stop.store(true, Ordering::Relaxed);
        callers.into_iter().for_each(|c| c.join().expect("caller"));
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no call fails while instances move");
    // Every instance is one core inside the process, and a core stays shared only while none
    // is free (the hot model may add one on an idle model's core then). The controller keeps
    // moving after the load stops, so a look may fall between a grow onto a shared core and
    // the retirement that frees another: the layout must get there, not be there at once.
    let used = || {
        let mut used = vec![0; 12];
        for span in models.iter().flat_map(Model::instances) {
            span.cores().for_each(|c| used[c] += 1);
        }
        used
    };
    wait_until(
        "no core shared while another is free",
        || {
            let used = used();
            used.iter().all(|&u| u <= 1) || used.iter().all(|&u| u >= 1)
        },
        || format!("{:?}", used()),
    );
    let (grew, shrank, _) = models[0].moves();
    assert!(grew >= 5 && shrank >= 5, "a grew, then gave its cores back: {grew} {shrank}");
    // The time line (the dashboard's) holds the loads and every move of `a`, in order (a
    // tick records its moves once it has made them all: it may be mid-way now).
    let of_a = |kind: &str| {
        let timeline = runtime.timeline_since(0);
        timeline.iter().filter(|e| e.model.as_deref() == Some("a") && e.kind == kind).count() as u64
    };
    wait_until(
        "every move counted is on the time line",
        || of_a("grow") >= grew && of_a("shrink") >= shrank,
        || format!("{:?}", runtime.timeline_since(0)),
    );
    let timeline = runtime.timeline_since(0);
    assert_eq!(timeline.iter().filter(|e| e.kind == "load").count(), 3, "{timeline:?}");
    assert!(timeline.windows(2).all(|w| w[0].seq < w[1].seq && w[0].unix_ms <= w[1].unix_ms));
    let last = timeline.last().expect("events").seq;
    assert!(runtime.timeline_since(last).iter().all(|e| e.seq > last), "only what follows");
    // ls sees the layout as it is.
    let layout = runtime.layout();
    assert_eq!(layout.placed().len(), counts().iter().sum::<usize>());
}

#[test]
fn bounds_are_kept_and_a_model_outside_them_is_brought_in() {
    let flaky = Flaky::default();
    let (_dir, runtime) = runtime_with("sim:8", None, None, flaky.settings());
    let bounded = runtime.load(ModelDef::sim("bounded", sim(20, 0)).autopilot(2, 3)).expect("loads");
    let pinned = runtime
        .load(ModelDef::sim("pinned", sim(20, 0)).autopilot(1, 1).at(Where::Cores { start: Some(7), count: None }))
        .expect("loads");
    // The controller's looks, witnessed: under load `looks` wants a second instance, and every
    // look tries to start it (one start at most: its max is 2), which the broken engine refuses.
    let looks = runtime.load(ModelDef::onnx("looks", "/looks.onnx").autopilot(1, 2)).expect("loads");
    flaky.broken.store(true, Ordering::Relaxed);
    wait_until(
        "bounded brought up to its min",
        || bounded.instances().len() == 2,
        || format!("{:?}", bounded.instances()),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let mut callers = drive(&bounded, 8, &stop, &failed);
    callers.extend(drive(&pinned, 8, &stop, &failed));
    callers.extend(drive(&looks, 2, &stop, &failed));
    wait_until("bounded grown to its max", || bounded.instances().len() == 3, || format!("{:?}", bounded.instances()));
    // Six looks under load, each of which would grow `bounded` past its max if it could.
    flaky.wait_refused(6, "six looks with bounded at its max");
    assert_eq!(bounded.instances().len(), 3, "never above max");
    assert_eq!(pinned.instances(), [corral_runtime::CoreSpan::new(7, 1)], "min = max pins count and cores");
    stop.store(true, Ordering::Relaxed);
    callers.into_iter().for_each(|c| c.join().expect("caller"));
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    let Err(error) = runtime.load(ModelDef::sim("bad", sim(1, 0)).autopilot(3, 2)) else {
        panic!("min above max loads")
    };
    assert!(error.to_string().contains("autopilot min = 3 is above max = 2"), "{error}");
}

#[test]
fn a_held_instance_is_not_retired_until_released() {
    let (_dir, runtime) = runtime_with("sim:4", None, None, settings());
    let model = runtime
        .load(ModelDef::sim("seq", sim(5, 0)).at(Where::Cores { start: Some(0), count: Some(3) }))
        .expect("loads");
    assert!(model.hold(2), "instance 2 holds a live sequence");
    // No load: the model shrinks to its min, but not below what it holds.
    wait_until("the idle model shrinking", || model.instances().len() == 1, || format!("{:?}", model.instance_ids()));
    assert_eq!(model.instance_ids(), [2]);
    assert!(model.try_submit_to(2, input()).expect("queued").wait().is_ok(), "the sequence's calls still reach it");
    model.release(2);
}

/// An engine whose sessions fail once `broken` is set (a model file gone, an engine error),
/// counting the starts it refused: each is a grow the controller tried at one of its looks.
#[derive(Clone, Default)]
struct Flaky {
    broken: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
}

impl Flaky {
    /// The test's settings with this engine for ONNX models.
    fn settings(&self) -> RuntimeSettings {
        RuntimeSettings { onnx_engine: Some(Arc::new(self.clone())), ..settings() }
    }

    /// Waits until `n` more starts are refused from now on.
    #[track_caller]
    fn wait_refused(&self, n: u64, what: &str) {
        let target = self.refused.load(Ordering::Relaxed) + n;
        wait_until(
            what,
            || self.refused.load(Ordering::Relaxed) >= target,
            || format!("{} of {target} starts refused", self.refused.load(Ordering::Relaxed)),
        );
    }
}

struct FlakyModel {
    engine: Flaky,
}

struct Instant0;

impl Session for Instant0 {
    fn run(&mut self, _inputs: &[Tensor], _switched: bool) -> Result<Vec<Tensor>, EngineError> {
        std::thread::sleep(Duration::from_millis(5));
        Ok(vec![Tensor::zeros_like(&TensorSpec::new("y", corral_engine::DataType::F32, vec![1, 2]))])
    }
}

impl Engine for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }

    fn prepare(&self, _source: &ModelSource) -> Result<Arc<Prepared>, EngineError> {
        let spec = vec![TensorSpec::new("x", corral_engine::DataType::F32, vec![1, 4])];
        Ok(Arc::new(Prepared::new(spec, Vec::new(), FlakyModel { engine: self.clone() })))
    }
}

impl Sessions for FlakyModel {
    fn session(&self, _placement: &SessionPlacement) -> Result<Box<dyn Session>, EngineError> {
        if self.engine.broken.load(Ordering::Relaxed) {
            self.engine.refused.fetch_add(1, Ordering::Relaxed);
            return Err(EngineError::Run("the model file is gone".to_owned()));
        }
        Ok(Box::new(Instant0))
    }
}

#[test]
fn a_preparation_that_fails_leaves_the_layout_as_it_was() {
    let flaky = Flaky::default();
    let (_dir, runtime): (_, Runtime) = runtime_with("sim:4", None, None, flaky.settings());
    let model = runtime.load(ModelDef::onnx("flaky", "/nonexistent.onnx")).expect("loads");
    flaky.broken.store(true, Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let callers = drive(&model, 6, &stop, &failed);
    // Ten refused starts are four looks at least: one look starts at most three, one per
    // free core.
    flaky.wait_refused(10, "ten starts tried under load");
    assert_eq!(model.instances().len(), 1, "no instance could start: the layout is as it was");
    assert_eq!(model.moves(), (0, 0, 0));
    flaky.broken.store(false, Ordering::Relaxed);
    wait_until(
        "growth once preparing works again",
        || model.instances().len() > 1,
        || format!("{:?}", model.instances()),
    );
    stop.store(true, Ordering::Relaxed);
    callers.into_iter().for_each(|c| c.join().expect("caller"));
    assert_eq!(failed.load(Ordering::Relaxed), 0);
}
