//! The autopilot's figures (SPEC §11), each side by side with the same load on a fixed
//! layout in the same run: a shifting hot model on `sim:inf2.24xlarge` (open-loop arrivals,
//! the generator `corral bench --rate` uses), the same under uniform load, two real ONNX
//! models taking turns on this machine's cores, and what the controller costs: its thread's
//! CPU on 64 simulated cores with 16 models, and per-call dispatch time with it on vs off.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use corral_engine::Engine;
use corral_engine_ort::OrtEngine;
use corral_runtime::{Model, ModelDef, Runtime, RuntimeSettings, Where, open_loop::Sent};

use super::{calls_per_second, inputs, median, ms, row, sim_model, us};

/// A runtime on `device` in a private registry, the autopilot on or off (default interval).
fn runtime(device: &str, ort: Option<&Arc<OrtEngine>>, autopilot: bool) -> (tempfile::TempDir, Runtime) {
    let dir = tempfile::tempdir().expect("dir");
    let mut settings = RuntimeSettings { autopilot: Some(autopilot), ..RuntimeSettings::default() };
    settings.take.device = Some(device.parse().expect("device"));
    settings.take.lock_dir = Some(dir.path().to_owned());
    settings.onnx_engine = ort.map(|o| o.clone() as Arc<dyn Engine>);
    (dir, Runtime::new(settings).expect("runtime"))
}

/// Calls and instance counts of one open-loop run.
struct Run {
    calls: Vec<Vec<Sent>>,
    /// (seconds from the start, instances per model), every 10 ms.
    counts: Vec<(f64, Vec<usize>)>,
    moves: u64,
    duration: f64,
}

impl Run {
    fn ok_ends(&self, model: usize, from: f64, to: f64) -> usize {
        self.calls[model].iter().filter(|c| c.error.is_none() && c.end >= from && c.end < to).count()
    }

    fn failed(&self) -> usize {
        self.calls.iter().flatten().filter(|c| c.error.is_some()).count()
    }

    fn p99(&self) -> Duration {
        let mut latencies: Vec<Duration> = self
            .calls
            .iter()
            .flatten()
            .filter(|c| c.error.is_none())
            .map(|c| Duration::from_secs_f64((c.end - c.arrival).max(0.0)))
            .collect();
        latencies.sort_unstable();
        latencies.get(latencies.len() * 99 / 100).copied().unwrap_or_default()
    }

    /// Seconds from `from` until `model` first held the count it held for most of the time
    /// to `to` (its median count there: a late wobble of one instance does not count).
    fn settle(&self, model: usize, from: f64, to: f64) -> f64 {
        let mut held: Vec<usize> =
            self.counts.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, c)| c[model]).collect();
        held.sort_unstable();
        let typical = held.get(held.len() / 2).copied().unwrap_or(0);
        self.counts.iter().find(|(t, c)| *t >= from && c[model] >= typical).map_or(to - from, |(t, _)| t - from)
    }
}

/// Four 1-core 10 ms models on `sim:inf2.24xlarge`, 3 cores each to start; `phases` gives each
/// phase's rates per model (`phase_s` seconds each, Poisson arrivals, one seed per phase).
fn sim_run(autopilot: bool, phases: &[Vec<f64>], phase_s: f64) -> Run {
    let (_dir, rt) = runtime("sim:inf2.24xlarge", None, autopilot);
    let models: Vec<Model> = (0..4)
        .map(|m| {
            let def = ModelDef::sim(format!("m{m}"), sim_model(10, 0));
            rt.load(def.at(Where::Cores { start: Some(3 * m), count: Some(3) })).expect("load")
        })
        .collect();
    let mut arrivals = vec![Vec::new(); models.len()];
    for (p, rates) in phases.iter().enumerate() {
        let scheduled = corral_plan::arrivals::schedule(rates, 1.0, p as u64, phase_s);
        for (m, times) in scheduled.into_iter().enumerate() {
            arrivals[m].extend(times.into_iter().map(|t| t + p as f64 * phase_s));
        }
    }
    replay(&models, &arrivals, phases.len() as f64 * phase_s)
}

/// Replays `arrivals` while a thread notes the instance counts.
fn replay(models: &[Model], arrivals: &[Vec<f64>], duration: f64) -> Run {
    let inputs: Vec<_> = models.iter().map(|m| inputs(m.inputs())).collect();
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (calls, counts) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut counts = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                counts.push((start.elapsed().as_secs_f64(), models.iter().map(|m| m.instances().len()).collect()));
                std::thread::sleep(Duration::from_millis(10));
            }
            counts
        });
        let calls = corral_runtime::open_loop::replay(models, &inputs, arrivals);
        stop.store(true, Ordering::Relaxed);
        (calls, watcher.join().expect("watcher"))
    });
    let moves = models.iter().map(|m| m.moves()).map(|(g, s, r)| g + s + r).sum();
    Run { calls, counts, moves, duration }
}

/// 1,000 calls/s over four models, 80% on one, the hot model changing every 10 s.
pub(super) fn shifting() {
    const PHASE_S: f64 = 10.0;
    let phases: Vec<Vec<f64>> =
        (0..4).map(|hot| (0..4).map(|m| if m == hot { 800.0 } else { 200.0 / 3.0 }).collect()).collect();
    let [fixed, auto] = [false, true].map(|on| sim_run(on, &phases, PHASE_S));
    let hot_rate = |run: &Run| {
        let done: usize = (0..4).map(|p| run.ok_ends(p, p as f64 * PHASE_S, (p + 1) as f64 * PHASE_S)).sum();
        done as f64 / (4.0 * PHASE_S)
    };
    let (a, f) = (hot_rate(&auto), hot_rate(&fixed));
    row(
        "autopilot: inf2.24xlarge, 4 x 10 ms, 1000/s, 80% hot, shifts/10 s",
        format!("{a:.0}/s"),
        format!("{f:.0}/s"),
        a / f,
        "hot-model calls/s >= 2x fixed (3 cores each)",
    );
    let (a, f) = (auto.p99(), fixed.p99());
    row("  p99 latency, every model", ms(a), ms(f), a.as_secs_f64() / f.as_secs_f64(), "<= fixed");
    row("  failed calls", auto.failed().to_string(), fixed.failed().to_string(), 0.0, "0 with the autopilot");
    let settles: Vec<f64> = (0..4).map(|p| auto.settle(p, p as f64 * PHASE_S, (p + 1) as f64 * PHASE_S)).collect();
    let worst = settles.iter().copied().fold(0.0, f64::max);
    row("  shift to new layout, worst of 4 (s)", format!("{worst:.2}"), "-".into(), 0.0, "<= 2 s");
    println!(
        "    each shift: {settles:.2?} s; moves {}; {} calls",
        auto.moves,
        auto.calls.iter().map(Vec::len).sum::<usize>()
    );
    if std::env::var_os("TRACE_COUNTS").is_some() {
        let mut last = Vec::new();
        for (t, c) in &auto.counts {
            if *c != last {
                println!("    {t:6.2} {c:?}");
                last = c.clone();
            }
        }
    }
    let uniform = vec![vec![250.0; 4]];
    let [fixed, auto] = [false, true].map(|on| sim_run(on, &uniform, 20.0));
    let all = |run: &Run| (0..4).map(|m| run.ok_ends(m, 0.0, f64::INFINITY)).sum::<usize>() as f64 / run.duration;
    let (a, f) = (all(&auto), all(&fixed));
    row("  uniform 4 x 250/s, calls/s", format!("{a:.0}/s"), format!("{f:.0}/s"), a / f, ">= 0.98x fixed");
    row("  uniform: moves", auto.moves.to_string(), fixed.moves.to_string(), 0.0, "0");
}

/// squeezenet and magika on this machine's cores, the load alternating between them every
/// 10 s (4 closed-loop callers on the hot one): one core each vs the autopilot.
pub(super) fn real_cores(ort: &Arc<OrtEngine>, site: &Path) {
    const PHASE: Duration = Duration::from_secs(10);
    let paths = [
        ("squeezenet", site.join("onnx/backend/test/data/light/light_squeezenet.onnx")),
        ("magika", site.join("magika/models/standard_v3_3/model.onnx")),
    ];
    let run = |autopilot: bool| {
        let (_dir, rt) = runtime("cpu", Some(ort), autopilot);
        let models: Vec<Model> = paths
            .iter()
            .enumerate()
            .map(|(i, (name, path))| {
                let def = ModelDef::onnx(*name, path).at(Where::Cores { start: Some(i), count: Some(1) });
                rt.load(def).expect("load")
            })
            .collect();
        let feeds: Vec<_> = models.iter().map(|m| inputs(m.inputs())).collect();
        for (model, feed) in models.iter().zip(&feeds) {
            model.infer(feed.clone()).expect("warm");
        }
        let mut rates = [0.0; 2];
        let mut moved = Vec::new();
        for phase in 0..4 {
            let hot = phase % 2;
            let started = Instant::now();
            let watch = AtomicBool::new(true);
            let rate = std::thread::scope(|s| {
                let watcher = s.spawn(|| {
                    while watch.load(Ordering::Relaxed) {
                        if models[hot].instances().len() > 1 {
                            return Some(started.elapsed());
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    None
                });
                let rate = calls_per_second(4, PHASE, |_| {
                    let (model, feed) = (&models[hot], &feeds[hot]);
                    move || drop(model.infer(feed.clone()).expect("infer"))
                });
                watch.store(false, Ordering::Relaxed);
                moved.extend(watcher.join().expect("watcher"));
                rate
            });
            rates[hot] += rate / 2.0;
        }
        (rates, moved, models.iter().map(|m| m.stats().failures).sum::<u64>())
    };
    let (fixed, _, fixed_failed) = run(false);
    let (auto, moved, auto_failed) = run(true);
    for (i, (name, _)) in paths.iter().enumerate() {
        row(
            &format!("autopilot: real cores, {name} hot, calls/s"),
            format!("{:.1}/s", auto[i]),
            format!("{:.1}/s", fixed[i]),
            auto[i] / fixed[i],
            ">= 1.6x one core each",
        );
    }
    row("  failed calls", auto_failed.to_string(), fixed_failed.to_string(), 0.0, "0");
    let moved: Vec<Duration> = moved.into_iter().collect();
    println!("    time to a second instance in each phase: {:?}", moved.iter().map(|d| ms(*d)).collect::<Vec<_>>());
}

/// The controller's CPU per interval on 64 simulated cores with 16 models under shifting
/// load, and the dispatch time of a tiny real model with the autopilot on vs off.
pub(super) fn cost(ort: &Arc<OrtEngine>, tiny: &Path) {
    let (_dir, rt) = runtime("sim:64", None, true);
    let models: Vec<Model> = (0..16)
        .map(|m| {
            let def = ModelDef::sim(format!("m{m:02}"), sim_model(10, 0));
            rt.load(def.at(Where::Cores { start: Some(4 * m), count: Some(4) })).expect("load")
        })
        .collect();
    // 10 s: the hot pair of models changes every 2.5 s (moves happen), 2,000 calls/s in all.
    let phases: Vec<Vec<f64>> =
        (0..4).map(|p| (0..16).map(|m| if m / 2 == p { 700.0 } else { 600.0 / 14.0 }).collect()).collect();
    let mut arrivals = vec![Vec::new(); 16];
    for (p, rates) in phases.iter().enumerate() {
        for (m, times) in corral_plan::arrivals::schedule(rates, 1.0, p as u64, 2.5).into_iter().enumerate() {
            arrivals[m].extend(times.into_iter().map(|t| t + p as f64 * 2.5));
        }
    }
    let before = autopilot_cpu();
    let run = replay(&models, &arrivals, 10.0);
    let used = autopilot_cpu() - before;
    let intervals = 10.0 / corral_runtime::AUTOPILOT_INTERVAL_DEFAULT.as_secs_f64();
    row(
        "autopilot: controller CPU, 64 sim cores, 16 models",
        format!("{:.3}%", used.as_secs_f64() / run.duration * 100.0),
        "-".into(),
        0.0,
        "< 1% of one CPU",
    );
    println!("    {} per interval, {} moves, {} failed calls", us(used.div_f64(intervals)), run.moves, run.failed());
    drop(models);
    drop(rt);
    // Dispatch: a tiny Add on one pinned instance, sequential calls, the runtime made afresh
    // for each side of each pair; the model's bounds (1, 1) keep its instance where it is, so
    // the two sides differ only by the controller running.
    let mut differences = Vec::new();
    let (mut on_all, mut off_all) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let mut pair = [Duration::ZERO; 2];
        for (side, autopilot) in [false, true].into_iter().enumerate() {
            let (_dir, rt) = runtime("cpu:logical", Some(ort), autopilot);
            let def = ModelDef::onnx("tiny", tiny).at(Where::Cores { start: Some(0), count: None }).autopilot(1, 1);
            let model = rt.load(def).expect("load");
            let input = inputs(model.inputs());
            for _ in 0..200 {
                model.infer(input.clone()).expect("warm");
            }
            let times: Vec<Duration> = (0..3000)
                .map(|_| {
                    let x = input.clone();
                    let t = Instant::now();
                    std::hint::black_box(model.infer(x).expect("infer"));
                    t.elapsed()
                })
                .collect();
            pair[side] = median(times);
        }
        off_all.push(pair[0]);
        on_all.push(pair[1]);
        differences.push(pair[1].as_secs_f64() - pair[0].as_secs_f64());
    }
    differences.sort_by(f64::total_cmp);
    let difference = differences[differences.len() / 2];
    let (on, off) = (median(on_all), median(off_all));
    row(
        "  dispatch p50, tiny Add, autopilot on vs off (7 pairs)",
        us(on),
        us(off),
        on.as_secs_f64() / off.as_secs_f64(),
        "difference <= 0.5 us",
    );
    println!("    on - off: {:+.2} us", difference * 1e6);
}

/// CPU time of this process's autopilot thread so far (its scheduler statistics, in ns).
fn autopilot_cpu() -> Duration {
    let tasks = std::fs::read_dir("/proc/self/task").expect("tasks");
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "corral-pilot" {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).expect("schedstat");
            let ns: u64 = stat.split_whitespace().next().and_then(|n| n.parse().ok()).expect("run time");
            return Duration::from_nanos(ns);
        }
    }
    panic!("no corral-pilot (autopilot) thread in this process");
}
