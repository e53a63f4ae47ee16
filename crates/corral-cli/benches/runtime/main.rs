//! The runtime's figures, measured side by side in one run and printed as one table
//! (`./bench/runtime.sh`): dispatch overhead, ONNX Runtime parity, replica scaling, the
//! simulator's throughput, switching under corral's scheduler vs plain FIFO order, and the
//! autopilot (`autopilot`: against fixed layouts, and what it costs).
//! Medians are over many calls; ratios compare runs made in the same process, one after
//! another. Not a test: numbers are printed, never asserted.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

mod autopilot;

use corral_engine::{DataType, Engine, ModelSource, SessionPlacement, SimModel, Tensor, TensorSpec};
use corral_engine_ort::OrtEngine;
use corral_runtime::{Model, ModelDef, Runtime, RuntimeSettings, Where};

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let want = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let site = corral_engine_ort::project_site_packages().expect("run ./scripts/setup first");
    let ort = Arc::new(OrtEngine::load(|n| std::env::var(n).ok()).expect("ONNX Runtime"));
    let cpus = corral_cores::allowed_cpus().expect("affinity");
    println!(
        "machine: {} CPUs allowed ({:?}), ONNX Runtime {}",
        cpus.len(),
        cpus,
        ort.library().file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned())
    );
    println!("{:<58} {:>12} {:>12} {:>9}  goal", "figure", "corral", "reference", "ratio");
    let light = |name: &str| site.join(format!("onnx/backend/test/data/light/light_{name}.onnx"));
    if want("dispatch") {
        dispatch(&ort, &site.join("onnx/backend/test/data/node/test_add/model.onnx"));
    }
    if want("parity") {
        for (name, path) in [
            ("squeezenet", light("squeezenet")),
            ("magika", site.join("magika/models/standard_v3_3/model.onnx")),
            ("inception_v1", light("inception_v1")),
            // An 80 us model, where the fixed cost of a thread handoff shows.
            ("silero-vad", site.join("silero_vad/data/silero_vad_16k_sequence.onnx")),
        ] {
            parity(&ort, name, &path);
        }
    }
    if want("scaling") {
        scaling(&ort, &light("squeezenet"), cpus.len());
    }
    if want("sim") {
        simulation();
    }
    if want("switch") {
        switching();
    }
    if want("autopilot-shift") {
        autopilot::shifting();
    }
    if want("autopilot-cpu") {
        autopilot::real_cores(&ort, &site);
    }
    if want("autopilot-cost") {
        autopilot::cost(&ort, &site.join("onnx/backend/test/data/node/test_add/model.onnx"));
    }
}

fn row(figure: &str, corral: String, reference: String, ratio: f64, goal: &str) {
    println!("{figure:<58} {corral:>12} {reference:>12} {ratio:>9.3}  {goal}");
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// A runtime on `device` in a private registry, with ONNX Runtime.
fn runtime(device: &str, ort: Option<Arc<OrtEngine>>, run_max: usize) -> (tempfile::TempDir, Runtime) {
    runtime_publishing(device, ort, run_max, true)
}

fn runtime_publishing(
    device: &str,
    ort: Option<Arc<OrtEngine>>,
    run_max: usize,
    publish: bool,
) -> (tempfile::TempDir, Runtime) {
    let dir = tempfile::tempdir().expect("dir");
    let mut settings = RuntimeSettings { run_max, publish, ..RuntimeSettings::default() };
    settings.take.device = Some(device.parse().expect("device"));
    settings.take.lock_dir = Some(dir.path().to_owned());
    settings.onnx_engine = ort.map(|o| o as Arc<dyn Engine>);
    (dir, Runtime::new(settings).expect("runtime"))
}

fn inputs(specs: &[TensorSpec]) -> Vec<Tensor> {
    corral_engine::sample_inputs(specs, 1)
}

/// Per-call time of a direct session on this (pinned) thread vs the same model through
/// corral from one caller, alternating rounds so both see the same machine.
fn dispatch(ort: &Arc<OrtEngine>, tiny: &Path) {
    let prepared = ort.prepare(&ModelSource::Onnx(tiny.to_owned())).expect("tiny model");
    let input = inputs(prepared.inputs());
    let (_dir, rt) = runtime("cpu:logical", Some(ort.clone()), 8);
    let cpu = rt_first_cpu(&rt);
    let mut direct = prepared.session(&SessionPlacement { core_cpus: vec![vec![cpu]] }).expect("session");
    let model = rt.load(ModelDef::onnx("tiny", tiny).at(Where::Cores { start: Some(0), count: None })).expect("load");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut beside = 0;
    for _ in 0..20 {
        // The direct calls run on a thread pinned like corral's worker; this one stays free.
        let direct = &mut direct;
        let input = &input;
        a.extend(
            std::thread::scope(|s| {
                s.spawn(move || {
                    pin(&[cpu]);
                    (0..500)
                        .map(|_| {
                            let x = input.clone();
                            let t = Instant::now();
                            std::hint::black_box(direct.run(&x, false).expect("run"));
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
                .join()
            })
            .expect("direct round"),
        );
        for _ in 0..500 {
            let x = input.clone();
            let t = Instant::now();
            std::hint::black_box(model.infer(x).expect("infer"));
            b.push(t.elapsed());
            // An unpinned caller the kernel keeps on the worker's CPU takes turns with it.
            beside += usize::from(nix::sched::sched_getcpu().is_ok_and(|c| c == cpu));
        }
    }
    let calls = b.len();
    let (direct, through) = (median(a), median(b));
    let added = through.saturating_sub(direct);
    row(
        &format!("dispatch: tiny Add, p50 per call (added {})", us(added)),
        us(through),
        us(direct),
        through.as_secs_f64() / direct.as_secs_f64(),
        "added p50 <= 2 us",
    );
    println!("  (the caller ran on the worker's CPU for {}% of the calls)", beside * 100 / calls);
    publication_cost(ort, tiny, &input);
}

/// The same calls through a runtime that publishes its counters (every 200 ms, for top and
/// monitor) and one that does not, alternating rounds.
fn publication_cost(ort: &Arc<OrtEngine>, tiny: &Path, input: &[Tensor]) {
    let placed = || ModelDef::onnx("tiny", tiny).at(Where::Cores { start: Some(0), count: None });
    let (_on_dir, on) = runtime_publishing("cpu:logical", Some(ort.clone()), 8, true);
    let (_off_dir, off) = runtime_publishing("cpu:logical", Some(ort.clone()), 8, false);
    let (on, off) = (on.load(placed()).expect("load"), off.load(placed()).expect("load"));
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        for (model, samples) in [(&on, &mut with), (&off, &mut without)] {
            for _ in 0..500 {
                let x = input.to_vec();
                let t = Instant::now();
                std::hint::black_box(model.infer(x).expect("infer"));
                samples.push(t.elapsed());
            }
        }
    }
    let (with, without) = (median(with), median(without));
    let added = with.as_secs_f64() - without.as_secs_f64();
    row(
        &format!("publication: tiny Add, p50 per call (added {:+.2} us)", added * 1e6),
        us(with),
        us(without),
        with.as_secs_f64() / without.as_secs_f64(),
        "added <= 1 us",
    );
}

fn rt_first_cpu(rt: &Runtime) -> usize {
    rt.core_stats()[0].cpus[0]
}

fn pin(cpus: &[usize]) {
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu).expect("cpu fits");
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("pin");
}

/// One single-core instance through corral vs a raw ORT session with the same one thread on
/// the same CPU, sequential calls. The raw thread stays pinned for the whole run and the two
/// take turns in short rounds (a few milliseconds for sub-millisecond models), so a drift in
/// the VM's speed lands on both sides alike.
fn parity(ort: &Arc<OrtEngine>, name: &str, path: &PathBuf) {
    let prepared = ort.prepare(&ModelSource::Onnx(path.clone())).expect("model");
    let input = inputs(prepared.inputs());
    let (_dir, rt) = runtime("cpu:logical", Some(ort.clone()), 8);
    let cpu = rt_first_cpu(&rt);
    let model = rt.load(ModelDef::onnx(name, path).at(Where::Cores { start: Some(0), count: None })).expect("load");
    let (rounds, per_round) = match name {
        "inception_v1" => (20, 3),
        "squeezenet" | "magika" => (20, 10),
        _ => (100, 20),
    };
    let (go, rounds_asked) = std::sync::mpsc::channel::<usize>();
    let (done, rounds_done) = std::sync::mpsc::channel::<Vec<Duration>>();
    // The raw session lives on its own thread pinned to the same CPU, like corral's worker.
    let raw = std::thread::spawn({
        let (prepared, input) = (prepared.clone(), input.clone());
        move || {
            pin(&[cpu]);
            let mut session = prepared.session(&SessionPlacement { core_cpus: vec![vec![cpu]] }).expect("session");
            session.run(&input, false).expect("warm");
            for calls in rounds_asked {
                let times = (0..calls)
                    .map(|_| {
                        let x = input.clone();
                        let t = Instant::now();
                        std::hint::black_box(session.run(&x, false).expect("run"));
                        t.elapsed()
                    })
                    .collect();
                done.send(times).expect("parity bench waits");
            }
        }
    });
    model.infer(input.clone()).expect("warm");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut compute = Vec::new();
    // The raw session again, but woken for each call as corral's worker is (it waits for its
    // next call on a channel, so its CPU idles between calls): what waiting costs a run.
    let mut woken = Vec::new();
    for _ in 0..rounds {
        go.send(per_round).expect("raw thread");
        a.extend(rounds_done.recv().expect("raw round"));
        for _ in 0..per_round {
            go.send(1).expect("raw thread");
            woken.extend(rounds_done.recv().expect("raw call"));
        }
        for _ in 0..per_round {
            let x = input.clone();
            let t = Instant::now();
            let answer = model.infer(x).expect("infer");
            b.push(t.elapsed());
            compute.push(answer.compute);
        }
    }
    drop(go);
    raw.join().expect("raw thread");
    let (raw, through, compute, woken) = (median(a), median(b), median(compute), median(woken));
    let time = if raw < Duration::from_millis(1) { us } else { ms };
    row(
        &format!("ORT parity: {name}, 1 core, p50 per call"),
        time(through),
        time(raw),
        through.as_secs_f64() / raw.as_secs_f64(),
        "ratio <= 1.02",
    );
    // The rest of the call is the handoff to the worker and back.
    row(
        &format!("  of which the worker's session.run ({} handoff)", us(through.saturating_sub(compute))),
        time(compute),
        time(raw),
        compute.as_secs_f64() / raw.as_secs_f64(),
        "",
    );
    row(
        "  the raw session woken for each call, as the worker is",
        time(woken),
        time(raw),
        woken.as_secs_f64() / raw.as_secs_f64(),
        "",
    );
}

/// Calls per second from `workers` threads: each runs `setup(index)` once (pinning, a
/// session) and then calls what it returns until `duration` has passed.
fn calls_per_second<F: FnMut()>(workers: usize, duration: Duration, setup: impl Fn(usize) -> F + Sync) -> f64 {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let count: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|index| {
                let (stop, setup) = (&stop, &setup);
                s.spawn(move || {
                    let mut call = setup(index);
                    let mut n = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        call();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(duration);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().expect("worker")).sum()
    });
    count as f64 / started.elapsed().as_secs_f64()
}

/// Calls per second through corral from `threads` callers.
fn throughput(model: &Model, input: &[Tensor], threads: usize, duration: Duration) -> f64 {
    calls_per_second(threads, duration, |_| || drop(model.infer(input.to_vec()).expect("infer")))
}

/// One single-core replica per core vs one replica, and vs one session with a thread per core.
fn scaling(ort: &Arc<OrtEngine>, path: &PathBuf, cores: usize) {
    let duration = Duration::from_secs(4);
    let (_dir, rt) = runtime("cpu:logical", Some(ort.clone()), 8);
    let rate = |def: ModelDef, callers: usize| {
        let model = rt.load(def).expect("load");
        let input = inputs(model.inputs());
        for _ in 0..model.instances().len() {
            model.infer(input.clone()).expect("warm");
        }
        let rate = throughput(&model, &input, callers, duration);
        rt.unload(model.name()).expect("unload");
        rate
    };
    let one = rate(ModelDef::onnx("one", path).at(Where::Cores { start: Some(0), count: None }), 2);
    let raw = raw_per_core(ort, path, &corral_cores::allowed_cpus().expect("affinity"), duration);
    let replicas = rate(ModelDef::onnx("replicas", path).at(Where::Multicore), 2 * cores);
    let wide = rate(ModelDef::onnx("wide", path).cores(cores).at(Where::Cores { start: Some(0), count: None }), 2);
    row(
        &format!("scaling: squeezenet, {cores} replicas vs 1 (calls/s)"),
        format!("{replicas:.1}/s"),
        format!("{one:.1}/s"),
        replicas / one,
        &format!(">= {:.2} (0.95 x cores)", 0.95 * cores as f64),
    );
    row(
        &format!("scaling: {cores} replicas vs raw ORT, 1 pinned session per CPU"),
        format!("{replicas:.1}/s"),
        format!("{raw:.1}/s"),
        replicas / raw,
        "the machine's ceiling",
    );
    row(
        &format!("scaling: {cores} replicas vs one {cores}-thread session (calls/s)"),
        format!("{replicas:.1}/s"),
        format!("{wide:.1}/s"),
        replicas / wide,
        "reference (raw ORT: up to 1.14)",
    );
}

fn sim_model(latency_ms: u64, switch_ms: u64) -> SimModel {
    SimModel {
        inputs: vec![TensorSpec::new("x", DataType::F32, vec![1, 4])],
        outputs: vec![TensorSpec::new("y", DataType::F32, vec![1, 2])],
        latency: Duration::from_millis(latency_ms),
        switch: Duration::from_millis(switch_ms),
    }
}

/// sim:trn2.48xlarge, 64 replicas of a 10 ms model, 128 callers.
fn simulation() {
    let (_dir, rt) = runtime("sim:trn2.48xlarge", None, 8);
    let model = rt.load(ModelDef::sim("m", sim_model(10, 0)).at(Where::Multicore)).expect("load");
    let input = inputs(model.inputs());
    let rate = throughput(&model, &input, 128, Duration::from_secs(5));
    row(
        "simulation: trn2.48xlarge, 64 x 10 ms replicas, 128 callers",
        format!("{rate:.0}/s"),
        "6400/s".into(),
        rate / 6400.0,
        ">= 6080/s (0.95)",
    );
}

/// Two models on one core, switch cost = latency: corral's same-model runs vs plain FIFO.
fn switching() {
    let measure = |run_max: usize| {
        let (_dir, rt) = runtime("sim:1", None, run_max);
        let a = rt.load(ModelDef::sim("a", sim_model(5, 5))).expect("load");
        let b = rt.load(ModelDef::sim("b", sim_model(5, 5))).expect("load");
        let input = inputs(a.inputs());
        let duration = Duration::from_secs(4);
        let rates: Vec<f64> = std::thread::scope(|s| {
            let ta = s.spawn(|| throughput(&a, &input, 4, duration));
            let tb = s.spawn(|| throughput(&b, &input, 4, duration));
            vec![ta.join().expect("a"), tb.join().expect("b")]
        });
        (rates.iter().sum::<f64>(), rt.core_stats()[0].switches)
    };
    let (ours, our_switches) = measure(8);
    let (fifo, fifo_switches) = measure(1);
    row(
        &format!("switching: 2 models on 1 core (switches {our_switches} vs {fifo_switches})"),
        format!("{ours:.1}/s"),
        format!("{fifo:.1}/s"),
        ours / fifo,
        ">= 1.5 x FIFO",
    );
}

/// Raw ORT: one single-thread session per CPU, each on its own pinned thread, no corral.
fn raw_per_core(ort: &Arc<OrtEngine>, path: &Path, cpus: &[usize], duration: Duration) -> f64 {
    let prepared = ort.prepare(&ModelSource::Onnx(path.to_owned())).expect("model");
    let input = inputs(prepared.inputs());
    calls_per_second(cpus.len(), duration, |index| {
        pin(&[cpus[index]]);
        let placement = SessionPlacement { core_cpus: vec![vec![cpus[index]]] };
        let mut session = prepared.session(&placement).expect("session");
        let input = &input;
        move || drop(session.run(&input.clone(), false).expect("run"))
    })
}
