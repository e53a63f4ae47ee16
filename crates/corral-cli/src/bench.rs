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
use corral_plan::report::{self, CoreRow, ModelRow};
use corral_runtime::{Model, Runtime};
use serde::Serialize;

use crate::cli::BenchArgs;

/// When a run stops.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    Requests(u64),
    Duration(Duration),
}

/// One run, measured or predicted (`corral plan --predict --json` prints the same shape).
#[derive(Debug, Serialize)]
pub struct Report {
    pub models: Vec<ModelRow>,
    pub cores: Vec<CoreRow>,
    pub elapsed_s: f64,
    /// Closed-loop callers; `null` for open-loop load.
    pub threads: Option<usize>,
    /// The layout a prediction ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<Vec<LayoutRow>>,
}

/// A model's place in a predicted run.
#[derive(Debug, Serialize)]
pub struct LayoutRow {
    pub name: String,
    pub cores_per_instance: usize,
    pub starts: Vec<usize>,
    pub elastic: bool,
    /// With the autopilot: where the run left its instances, and the moves it made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autopilot: Option<AutopilotRow>,
}

/// What the autopilot did to a model over a predicted run.
#[derive(Debug, Serialize)]
pub struct AutopilotRow {
    pub starts_at_end: Vec<usize>,
    pub grow: u64,
    pub shrink: u64,
    #[serde(rename = "move")]
    pub r#move: u64,
}

pub fn run(args: &BenchArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    let open_loop = !args.load.rate.is_empty();
    if !open_loop && (args.load.cv.is_some() || args.load.seed.is_some()) {
        bail!("--cv and --seed shape open-loop load: give --rate MODEL=R too");
    }
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
        eprintln!("{}", runtime.layout().render());
        let report = drive_open(&runtime, &models, &rates, cv, seed, duration);
        print_report(&report, args.json);
        return Ok(());
    }
    let threads = args.threads.unwrap_or(2 * runtime.cores());
    let limit = match (args.requests, args.duration) {
        (Some(n), _) => Limit::Requests(n),
        (None, Some(secs)) if secs > 0.0 && secs.is_finite() => Limit::Duration(Duration::from_secs_f64(secs)),
        (None, Some(secs)) => anyhow::bail!("--duration {secs} is not valid: give a number of seconds above 0"),
        (None, None) => Limit::Duration(Duration::from_secs(5)),
    };
    eprintln!("{}", runtime.layout().render());
    let report = drive(&runtime, &models, threads, limit);
    print_report(&report, args.json);
    Ok(())
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
pub fn drive_open(runtime: &Runtime, models: &[Model], rates: &[f64], cv: f64, seed: u64, duration: f64) -> Report {
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
    let before = runtime.core_stats();
    let sent = corral_runtime::open_loop::replay(models, &inputs, &arrivals);
    let after = runtime.core_stats();
    let end = sent.iter().flatten().map(|c| c.end).fold(duration, f64::max);
    let model_rows = models
        .iter()
        .zip(&sent)
        .map(|(model, calls)| {
            let calls: Vec<report::Call> = calls
                .iter()
                .map(|c| report::Call { arrival: c.arrival, start: c.start, end: c.end, ok: c.error.is_none() })
                .collect();
            report::model_row(model.name(), &calls, duration)
        })
        .collect();
    Report {
        models: model_rows,
        cores: core_rows(&before, &after, end),
        elapsed_s: duration,
        threads: None,
        layout: None,
    }
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
    let threads = threads.max(models.len());
    let inputs: Vec<Vec<Tensor>> = models.iter().map(|m| corral_engine::sample_inputs(m.inputs(), 1)).collect();
    for (model, input) in models.iter().zip(&inputs) {
        for _ in 0..model.instances().len() {
            let _ = model.infer(input.clone());
        }
    }
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
    let model_rows = models
        .iter()
        .enumerate()
        .map(|(i, model)| {
            let calls: Vec<report::Call> = per_thread.iter().flat_map(|t| t[i].iter().copied()).collect();
            // Every call of a closed loop is in the run: its window is the whole run.
            report::model_row(model.name(), &calls, elapsed)
        })
        .collect();
    Report {
        models: model_rows,
        cores: core_rows(&before, &after, elapsed),
        elapsed_s: elapsed,
        threads: Some(threads),
        layout: None,
    }
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
