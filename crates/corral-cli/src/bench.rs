//! `corral bench`: load a repository with its configured placement, drive calls from many
//! threads, then report per model and per core. Latencies are measured by the callers, around
//! the whole call.
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

use corral_engine::Tensor;
use corral_runtime::{Model, Runtime};
use serde::Serialize;

use crate::cli::BenchArgs;

/// When a run stops.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    Requests(u64),
    Duration(Duration),
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub models: Vec<ModelRow>,
    pub cores: Vec<CoreRow>,
    pub elapsed_s: f64,
    pub threads: usize,
}

#[derive(Debug, Serialize)]
pub struct ModelRow {
    pub name: String,
    pub requests: u64,
    pub failures: u64,
    pub throughput_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct CoreRow {
    pub index: usize,
    pub global: usize,
    pub executions: u64,
    pub busy_fraction: f64,
    pub switches: u64,
    pub models: Vec<String>,
}

pub fn run(args: &BenchArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    let runtime = crate::models::runtime(&args.device, Some(&args.cores), lookup)?;
    let mut models = Vec::new();
    for def in crate::models::read(args.models.path())? {
        match runtime.load(def) {
            // A shared core is announced on stderr by the runtime's warning.
            Ok(model) => models.push(model),
            Err(error) => eprintln!("warning: skipping a model: {error}"),
        }
    }
    if models.is_empty() {
        anyhow::bail!("no model could be loaded");
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
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("a report always serializes"));
    } else {
        print!("{}", tables(&report));
    }
    Ok(())
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
    let per_thread: Vec<Vec<(Vec<Duration>, u64)>> = std::thread::scope(|s| {
        let callers: Vec<_> = (0..threads)
            .map(|t| {
                let (issued, done, stop, inputs) = (&issued, &done, &stop, &inputs);
                s.spawn(move || {
                    let mut seen: Vec<(Vec<Duration>, u64)> = vec![(Vec::new(), 0); models.len()];
                    let which = t % models.len();
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
                        match models[which].infer(inputs[which].clone()) {
                            Ok(_) => seen[which].0.push(call.elapsed()),
                            Err(_) => seen[which].1 += 1,
                        }
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
    let elapsed = started.elapsed();
    if show_progress {
        eprintln!();
    }
    let after = runtime.core_stats();
    let model_rows = models
        .iter()
        .enumerate()
        .map(|(i, model)| {
            let mut latencies: Vec<Duration> = per_thread.iter().flat_map(|t| t[i].0.iter().copied()).collect();
            latencies.sort_unstable();
            let failures = per_thread.iter().map(|t| t[i].1).sum();
            let pick = |q: f64| {
                latencies
                    .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
                    .map_or(0.0, |d| d.as_secs_f64() * 1e3)
            };
            ModelRow {
                name: model.name().to_owned(),
                requests: latencies.len() as u64 + failures,
                failures,
                throughput_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
                p50_ms: pick(0.50),
                p99_ms: pick(0.99),
            }
        })
        .collect();
    let core_rows = after
        .iter()
        .zip(&before)
        .map(|(a, b)| CoreRow {
            index: a.index,
            global: a.global,
            executions: a.executions - b.executions,
            busy_fraction: (a.busy - b.busy).as_secs_f64() / elapsed.as_secs_f64(),
            switches: a.switches - b.switches,
            models: a.models.clone(),
        })
        .collect();
    Report { models: model_rows, cores: core_rows, elapsed_s: elapsed.as_secs_f64(), threads }
}

/// The two tables `bench` prints.
pub fn tables(report: &Report) -> String {
    let mut rows =
        vec![["MODEL", "REQUESTS", "FAILED", "THROUGHPUT/S", "P50 MS", "P99 MS"].map(str::to_owned).to_vec()];
    for m in &report.models {
        rows.push(vec![
            m.name.clone(),
            m.requests.to_string(),
            m.failures.to_string(),
            format!("{:.1}", m.throughput_per_s),
            format!("{:.2}", m.p50_ms),
            format!("{:.2}", m.p99_ms),
        ]);
    }
    let out = format!("{} threads, {:.1} s\n", report.threads, report.elapsed_s) + &crate::table::render(&rows) + "\n";
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
