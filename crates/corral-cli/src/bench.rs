//! `corral bench`: load a repository with its configured placement, drive calls from many
//! threads, then report per model and per core. Latencies are measured by the callers, around
//! the whole call.
//!
//! With `--rate MODEL=R,...` the load is open-loop instead (`corral_runtime::open_loop`):
//! calls are sent at the generator's arrival times (`corral_plan::arrivals`, the same for the
//! same `--cv` and `--seed` as `corral plan --predict`), whatever the answers, and each call's
//! latency counts from its scheduled arrival; a full queue refuses a call, counted as a
//! failure. The report is the shape `plan --predict --json` prints (`corral_plan::report`).
//!
//! `--sweep N` runs N load points (k/N of the threads or rates, k = 1..N); `--report FILE.html`
//! draws them (`report.rs`), with each core's busy time read every 250 ms during each run.
//!
//! Each model has callers of its own: thread `t` calls model `t mod M` only (so `--threads`
//! is split as evenly as it goes, and every model gets at least one). A slow model then
//! throttles only its own callers; a caller rotating over models would wait on the slowest
//! and make models that share nothing look slow too.

use std::{
    io::IsTerminal,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::bail;
use corral_engine::Tensor;
use corral_plan::report::{self, CoreRow};
use corral_runtime::{Model, Runtime};

use crate::{cli::BenchArgs, report::Report};

/// When a run stops.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    Requests(u64),
    Duration(Duration),
}

pub fn run(args: &BenchArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    let open_loop = !args.load.rate.is_empty();
    if !open_loop && (args.load.cv.is_some() || args.load.seed.is_some()) {
        bail!("--cv and --seed shape open-loop load: give --rate MODEL=R too");
    }
    let fractions = crate::report::fractions(args.report.sweep)?;
    // Before anything runs: a report that cannot be written fails now.
    let target = args.report.report.as_deref().map(crate::report::Target::create).transpose()?;
    let runtime = crate::models::runtime(&args.device, Some(&args.cores), args.autopilot, lookup)?;
    let mut models = Vec::new();
    for def in crate::models::read(args.models.path())? {
        match runtime.load(crate::models::with_engine(def, args.engine.as_deref())) {
            // A shared core is announced on stderr by the runtime's warning.
            Ok(model) => models.push(model),
            Err(error) => eprintln!("warning: skipping a model: {error}"),
        }
    }
    if models.is_empty() {
        anyhow::bail!("no model could be loaded");
    }
    let layout_svg = runtime.layout().svg();
    let mut settings = vec![
        ("command".to_owned(), crate::report::command_line()),
        ("device".to_owned(), format!("{} (cores {})", runtime.device(), runtime.global_cores())),
        ("autopilot".to_owned(), runtime.autopilot().to_string()),
        ("engine".to_owned(), args.engine.clone().unwrap_or_else(|| "as configured".to_owned())),
        ("load points".to_owned(), fractions.len().to_string()),
    ];
    let mut points = Vec::new();
    if open_loop {
        let names: Vec<String> = models.iter().map(|m| m.name().to_owned()).collect();
        let rates: Vec<f64> =
            crate::planning::flag_rates(&args.load.rate, &names)?.into_iter().map(|r| r.unwrap_or(0.0)).collect();
        let duration = match args.duration {
            Some(secs) => {
                crate::cli::parse_seconds(&secs.to_string()).map_err(|e| anyhow::anyhow!("--duration {secs}: {e}"))?
            }
            None => 5.0,
        };
        let (cv, seed) = crate::planning::generator(&args.load);
        settings.extend([
            ("load".to_owned(), format!("open loop: {}", args.load.rate.join(" "))),
            ("seconds per point".to_owned(), duration.to_string()),
            ("cv, seed".to_owned(), format!("{cv}, {seed}")),
        ]);
        eprintln!("{}", runtime.layout().render());
        // With a report, the simulator's prediction of the same layout and arrivals beside.
        let predictor = target.as_ref().map(|_| Predictor::new(args, &runtime, &names, &rates, lookup));
        if let Some(Err(why)) = &predictor {
            settings.push(("prediction".to_owned(), format!("none: {why:#}")));
        }
        for fraction in fractions {
            let scaled: Vec<f64> = rates.iter().map(|r| r * fraction).collect();
            let measured = drive_open_recorded(&runtime, &models, &scaled, cv, seed, duration);
            let mut point = measured.point(format!("rates ×{fraction:.2}"));
            if let Some(Ok(predictor)) = &predictor {
                point.predicted = Some(predictor.run(fraction, cv, seed, duration));
            }
            points.push(point);
        }
    } else {
        let threads = args.threads.unwrap_or(2 * runtime.cores());
        let limit = match (args.requests, args.duration) {
            (Some(n), _) => Limit::Requests(n),
            (None, Some(secs)) if secs > 0.0 && secs.is_finite() => Limit::Duration(Duration::from_secs_f64(secs)),
            (None, Some(secs)) => anyhow::bail!("--duration {secs} is not valid: give a number of seconds above 0"),
            (None, None) => Limit::Duration(Duration::from_secs(5)),
        };
        settings.extend([
            ("load".to_owned(), format!("{threads} calling threads at most")),
            ("limit".to_owned(), format!("{limit:?}")),
        ]);
        eprintln!("{}", runtime.layout().render());
        for fraction in fractions {
            let point_threads = ((threads as f64 * fraction).ceil() as usize).max(models.len());
            let measured = drive_recorded(&runtime, &models, point_threads, limit);
            points.push(measured.point(format!("{point_threads} threads")));
        }
    }
    print_points(&points, args.json);
    if let Some(target) = target {
        let document =
            crate::report::Document { title: "corral bench".to_owned(), measured: true, settings, points, layout_svg };
        crate::report::write(target, &document)?;
    }
    Ok(())
}

/// One report as before, or, for a sweep, one per load point (`{"points": [...]}` in JSON).
pub fn print_points(points: &[crate::report::Point], json: bool) {
    match points {
        [one] => print_report(&one.report, json),
        _ if json => {
            let reports: Vec<&Report> = points.iter().map(|p| &p.report).collect();
            let out = serde_json::json!({ "points": reports });
            println!("{}", serde_json::to_string_pretty(&out).expect("a report always serializes"));
        }
        _ => {
            for (k, point) in points.iter().enumerate() {
                println!("load point {} of {}: {}", k + 1, points.len(), point.load);
                print!("{}", tables(&point.report));
                println!();
            }
        }
    }
}

/// The simulator set up as the runtime placed the models (`plan --predict`'s, for a report
/// to draw the prediction beside the measurement).
struct Predictor {
    spec: corral_plan::simulate::Spec,
    layout: corral_runtime::Layout,
    elastic: Vec<bool>,
    /// Per model of the spec, its rate.
    rates: Vec<f64>,
}

impl Predictor {
    fn new(
        args: &BenchArgs,
        runtime: &Runtime,
        names: &[String],
        rates: &[f64],
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Predictor> {
        let (folders, _) = corral_runtime::repository::read_folders(args.models.path())?;
        let layout = runtime.layout();
        let folders: Vec<_> = folders.into_iter().filter(|f| names.contains(&f.def.name)).collect();
        let mut specs = Vec::new();
        for folder in &folders {
            let instances = layout.placed().iter().filter(|p| p.model == folder.def.name).map(|p| p.cores).collect();
            specs.push(crate::planning::model_spec(folder, instances, folder.def.elastic)?);
        }
        let rates = folders.iter().map(|f| names.iter().position(|n| *n == f.def.name).map_or(0.0, |i| rates[i]));
        Ok(Predictor {
            spec: crate::planning::spec(runtime.cores(), specs, runtime.autopilot(), lookup)?,
            elastic: folders.iter().map(|f| f.def.elastic).collect(),
            rates: rates.collect(),
            layout,
        })
    }

    fn run(&self, fraction: f64, cv: f64, seed: u64, duration: f64) -> Report {
        let scaled: Vec<f64> = self.rates.iter().map(|r| r * fraction).collect();
        let arrivals = corral_plan::arrivals::schedule(&scaled, cv, seed, duration);
        let run = corral_plan::simulate::simulate(&self.spec, &arrivals, seed);
        crate::planning::predicted(&self.spec, &run, duration, &self.layout, &self.elastic)
    }
}

/// A run's report, and what a report file draws of it.
pub struct Measured {
    pub report: Report,
    pub series: crate::report::Series,
}

impl Measured {
    fn point(self, load: String) -> crate::report::Point {
        crate::report::Point { load, report: self.report, series: self.series, predicted: None }
    }
}

/// The autopilot's moves recorded after `seq`, timed from `started` (milliseconds since the
/// epoch).
fn moves_since(runtime: &Runtime, seq: u64, started: u64) -> Vec<crate::report::MoveAt> {
    let moves = runtime.timeline_since(seq).into_iter().filter(|e| matches!(e.kind, "grow" | "shrink" | "move"));
    moves
        .map(|e| crate::report::MoveAt {
            t_s: e.unix_ms.saturating_sub(started) as f64 / 1000.0,
            model: e.model.unwrap_or_default(),
            kind: e.kind.to_owned(),
        })
        .collect()
}

/// The last time line event's number, to read the moves of a run after it.
fn timeline_mark(runtime: &Runtime) -> u64 {
    runtime.timeline_since(0).last().map_or(0, |e| e.seq)
}

fn print_report(report: &Report, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(report).expect("a report always serializes"));
    } else {
        print!("{}", tables(report));
    }
}

/// Warms every instance up once, then sends open-loop load at `rates` (per model, in the
/// order of `models`) for `duration` seconds and waits for every answer.
pub fn drive_open_recorded(
    runtime: &Runtime,
    models: &[Model],
    rates: &[f64],
    cv: f64,
    seed: u64,
    duration: f64,
) -> Measured {
    let inputs: Vec<Vec<Tensor>> = models.iter().map(|m| corral_engine::sample_inputs(m.inputs(), 1)).collect();
    for (model, input) in models.iter().zip(&inputs) {
        for _ in 0..model.instances().len() {
            let _ = model.infer(input.clone());
        }
    }
    // Models in name order get streams 0, 1, …, as plan --predict gives them.
    let mut by_name: Vec<usize> = (0..models.len()).collect();
    by_name.sort_by(|&a, &b| models[a].name().cmp(models[b].name()));
    let sorted_rates: Vec<f64> = by_name.iter().map(|&m| rates[m]).collect();
    let scheduled = corral_plan::arrivals::schedule(&sorted_rates, cv, seed, duration);
    let mut arrivals = vec![Vec::new(); models.len()];
    for (stream, &m) in by_name.iter().enumerate() {
        arrivals[m] = scheduled[stream].clone();
    }
    let (mark, started_ms) = (timeline_mark(runtime), corral_cores::now_unix_ms());
    let sampler = crate::report::Sampler::start(runtime);
    let before = runtime.core_stats();
    let sent = corral_runtime::open_loop::replay(models, &inputs, &arrivals);
    let after = runtime.core_stats();
    let core_busy = sampler.finish();
    let end = sent.iter().flatten().map(|c| c.end).fold(duration, f64::max);
    let calls: Vec<Vec<report::Call>> = sent
        .iter()
        .map(|calls| {
            calls
                .iter()
                .map(|c| report::Call { arrival: c.arrival, start: c.start, end: c.end, ok: c.error.is_none() })
                .collect()
        })
        .collect();
    let model_rows =
        models.iter().zip(&calls).map(|(model, calls)| report::model_row(model.name(), calls, duration)).collect();
    let report = Report {
        models: model_rows,
        cores: core_rows(&before, &after, end),
        elapsed_s: duration,
        threads: None,
        layout: None,
    };
    let series = crate::report::Series::new(&calls, core_busy, moves_since(runtime, mark, started_ms));
    Measured { report, series }
}

/// Per core, what happened between two readings `elapsed` seconds apart.
fn core_rows(before: &[corral_runtime::CoreStats], after: &[corral_runtime::CoreStats], elapsed: f64) -> Vec<CoreRow> {
    after
        .iter()
        .zip(before)
        .map(|(a, b)| CoreRow {
            index: a.index,
            global: a.global,
            executions: a.executions - b.executions,
            busy_fraction: (a.busy - b.busy).as_secs_f64() / elapsed.max(1e-9),
            switches: a.switches - b.switches,
            models: a.models.clone(),
        })
        .collect()
}

/// Warms every instance up once, then runs `threads` callers (at least one per model; see
/// the module docs) until `limit`.
pub fn drive(runtime: &Runtime, models: &[Model], threads: usize, limit: Limit) -> Report {
    drive_recorded(runtime, models, threads, limit).report
}

/// [`drive`], with what a report draws.
pub fn drive_recorded(runtime: &Runtime, models: &[Model], threads: usize, limit: Limit) -> Measured {
    let threads = threads.max(models.len());
    let inputs: Vec<Vec<Tensor>> = models.iter().map(|m| corral_engine::sample_inputs(m.inputs(), 1)).collect();
    for (model, input) in models.iter().zip(&inputs) {
        for _ in 0..model.instances().len() {
            let _ = model.infer(input.clone());
        }
    }
    let (mark, started_ms) = (timeline_mark(runtime), corral_cores::now_unix_ms());
    let sampler = crate::report::Sampler::start(runtime);
    let before = runtime.core_stats();
    let issued = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let show_progress = std::io::stderr().is_terminal();
    let per_thread: Vec<Vec<Vec<report::Call>>> = std::thread::scope(|s| {
        let callers: Vec<_> = (0..threads)
            .map(|t| {
                let (issued, done, stop, inputs) = (&issued, &done, &stop, &inputs);
                s.spawn(move || {
                    let mut seen: Vec<Vec<report::Call>> = vec![Vec::new(); models.len()];
                    let which = t % models.len();
                    let since = |at: Instant| at.saturating_duration_since(started).as_secs_f64();
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Limit::Requests(n) = limit
                            && issued.fetch_add(1, Ordering::Relaxed) >= n
                        {
                            break;
                        }
                        let call = Instant::now();
                        let outcome = models[which].infer(inputs[which].clone());
                        let end = since(Instant::now());
                        let start = outcome.as_ref().ok().map(|inference| since(inference.started));
                        seen[which].push(report::Call { arrival: since(call), start, end, ok: outcome.is_ok() });
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    seen
                })
            })
            .collect();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let finished = callers.iter().all(|c| c.is_finished());
            let elapsed = started.elapsed();
            if let Limit::Duration(limit) = limit
                && elapsed >= limit
            {
                stop.store(true, Ordering::Relaxed);
            }
            if show_progress {
                let fraction = match limit {
                    Limit::Duration(d) => elapsed.as_secs_f64() / d.as_secs_f64(),
                    Limit::Requests(n) => done.load(Ordering::Relaxed) as f64 / n.max(1) as f64,
                }
                .min(1.0);
                let bar = "#".repeat((fraction * 30.0) as usize);
                eprint!("\r[{bar:<30}] {} calls, {:.1} s", done.load(Ordering::Relaxed), elapsed.as_secs_f64());
            }
            if finished || stop.load(Ordering::Relaxed) {
                break;
            }
        }
        callers.into_iter().map(|c| c.join().expect("a caller thread never panics")).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    if show_progress {
        eprintln!();
    }
    let after = runtime.core_stats();
    let core_busy = sampler.finish();
    let calls: Vec<Vec<report::Call>> =
        (0..models.len()).map(|i| per_thread.iter().flat_map(|t| t[i].iter().copied()).collect()).collect();
    // Every call of a closed loop is in the run: its window is the whole run.
    let model_rows =
        models.iter().zip(&calls).map(|(model, calls)| report::model_row(model.name(), calls, elapsed)).collect();
    let report = Report {
        models: model_rows,
        cores: core_rows(&before, &after, elapsed),
        elapsed_s: elapsed,
        threads: Some(threads),
        layout: None,
    };
    let series = crate::report::Series::new(&calls, core_busy, moves_since(runtime, mark, started_ms));
    Measured { report, series }
}

/// The two tables `bench` prints.
pub fn tables(report: &Report) -> String {
    let mut rows = vec![
        ["MODEL", "REQUESTS", "FAILED", "OFFERED/S", "THROUGHPUT/S", "P50 MS", "P99 MS", "QUEUE MS", "QUEUE P99"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for m in &report.models {
        rows.push(vec![
            m.name.clone(),
            m.requests.to_string(),
            m.failures.to_string(),
            format!("{:.1}", m.offered_per_s),
            format!("{:.1}", m.throughput_per_s),
            format!("{:.2}", m.p50_ms),
            format!("{:.2}", m.p99_ms),
            format!("{:.2}", m.queue_ms.mean),
            format!("{:.2}", m.queue_ms.p99),
        ]);
    }
    let load = match report.threads {
        Some(threads) => format!("{threads} threads"),
        None => "open-loop load".to_owned(),
    };
    let out = format!("{load}, {:.1} s\n", report.elapsed_s) + &crate::table::render(&rows) + "\n";
    let mut rows = vec![["CORE", "EXECUTIONS", "BUSY", "SWITCHES", "MODELS"].map(str::to_owned).to_vec()];
    for c in &report.cores {
        rows.push(vec![
            format!("nc{}", c.index),
            c.executions.to_string(),
            format!("{:.0}%", c.busy_fraction * 100.0),
            c.switches.to_string(),
            c.models.join(","),
        ]);
    }
    out + &crate::table::render(&rows)
}
