//! A run's report ([`Report`]: what `bench --json` and `plan --predict --json` print), and
//! `--report FILE.html` of `corral bench` and `corral plan --predict`: one self-contained HTML
//! file (inline SVG charts from `chart.rs`, no script, no external asset) and `FILE.json`
//! beside it with the same numbers.
//!
//! Sections, each one chart: throughput against latency per model across the `--sweep` load
//! points (measured by `bench`, predicted by `plan --predict`), every core's utilisation over
//! the highest load point's run (grey levels per 250 ms) with the autopilot's moves marked, queue against compute per
//! model, and the layout as the core map; then the run's settings. `FILE.json` holds, per load
//! point, the `--json` report and its series in [`INTERVAL`] steps (each core's busy share,
//! each model's answers per second, the moves).
//!
//! Both files are created before the run, so a path that cannot be written fails at once.

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use corral_plan::report::{Call, CoreRow, ModelRow};
use serde::Serialize;

use crate::chart::{Bars, Heat, Lines, Mark, Series as Line, escape};

/// The series' step, seconds.
pub const INTERVAL: f64 = 0.25;

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

/// The two files, created before the run.
pub struct Target {
    html: (PathBuf, File),
    json: (PathBuf, File),
}

impl Target {
    /// Creates `path` (which must end in `.html`) and the `.json` beside it.
    pub fn create(path: &Path) -> anyhow::Result<Target> {
        if path.extension().and_then(|e| e.to_str()) != Some("html") {
            bail!("--report {} must name an .html file (its numbers go to the .json beside it)", path.display());
        }
        let json = path.with_extension("json");
        let open = |p: &Path| {
            File::create(p).with_context(|| format!("cannot write the report to {}: nothing was run", p.display()))
        };
        Ok(Target { html: (path.to_owned(), open(path)?), json: (json.clone(), open(&json)?) })
    }
}

/// A move of the autopilot during a run.
#[derive(Clone, Debug, Serialize)]
pub struct MoveAt {
    /// Seconds from the run's start.
    pub t_s: f64,
    pub model: String,
    /// `grow`, `shrink` or `move`.
    pub kind: String,
}

/// A run's time series.
#[derive(Debug, Default, Serialize)]
pub struct Series {
    pub interval_s: f64,
    /// Per core (the report's order), its busy share of each interval, 0 to 1.
    pub core_busy: Vec<Vec<f64>>,
    /// Per model (the report's order), its calls answered successfully in each interval, per
    /// second.
    pub answered_per_s: Vec<Vec<f64>>,
    pub moves: Vec<MoveAt>,
}

impl Series {
    /// From each model's calls, each core's busy shares (already in steps) and the moves.
    pub fn new(calls: &[Vec<Call>], core_busy: Vec<Vec<f64>>, moves: Vec<MoveAt>) -> Series {
        let end = calls.iter().flatten().map(|c| c.end).fold(0.0, f64::max);
        let steps = (end / INTERVAL).ceil() as usize;
        let answered_per_s = calls
            .iter()
            .map(|calls| {
                let mut bins = vec![0.0; steps.max(1)];
                for call in calls.iter().filter(|c| c.ok) {
                    let bin = ((call.end / INTERVAL) as usize).min(bins.len() - 1);
                    bins[bin] += 1.0 / INTERVAL;
                }
                bins
            })
            .collect();
        Series { interval_s: INTERVAL, core_busy, answered_per_s, moves }
    }
}

/// Each core's busy share per step from executions `(core, start, end)` in seconds (a
/// simulated run's calls).
pub fn busy_from_executions(cores: usize, executions: impl Iterator<Item = (usize, f64, f64)>) -> Vec<Vec<f64>> {
    let mut busy: Vec<Vec<f64>> = vec![Vec::new(); cores];
    for (core, start, end) in executions {
        let Some(bins) = busy.get_mut(core) else { continue };
        let mut at = start;
        while at < end {
            let bin = (at / INTERVAL) as usize;
            let bin_end = ((bin + 1) as f64 * INTERVAL).min(end);
            if bins.len() <= bin {
                bins.resize(bin + 1, 0.0);
            }
            bins[bin] += (bin_end - at) / INTERVAL;
            at = bin_end;
        }
    }
    let steps = busy.iter().map(Vec::len).max().unwrap_or(0);
    for bins in &mut busy {
        bins.resize(steps, 0.0);
        bins.iter_mut().for_each(|b| *b = b.min(1.0));
    }
    busy
}

/// Reads a runtime's per-core busy time every [`INTERVAL`] while a run goes on.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Vec<f64>>>,
}

impl Sampler {
    pub fn start(runtime: &corral_runtime::Runtime) -> Sampler {
        let (runtime, stop) = (runtime.clone(), Arc::new(AtomicBool::new(false)));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let read = || runtime.core_stats().iter().map(|c| c.busy).collect::<Vec<Duration>>();
            let started = Instant::now();
            let mut last = read();
            let mut steps: Vec<Vec<f64>> = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                let next = started + Duration::from_secs_f64(INTERVAL * (steps.len() + 1) as f64);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                let now = read();
                steps.push(
                    now.iter()
                        .zip(&last)
                        .map(|(n, l)| (n.saturating_sub(*l).as_secs_f64() / INTERVAL).min(1.0))
                        .collect(),
                );
                last = now;
            }
            // Per core, its steps.
            let cores = steps.first().map_or(0, Vec::len);
            (0..cores).map(|c| steps.iter().map(|s| s[c]).collect()).collect()
        });
        Sampler { stop, thread }
    }

    pub fn finish(self) -> Vec<Vec<f64>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// One load point of a sweep.
#[derive(Debug, Serialize)]
pub struct Point {
    /// The load, in words: `8 threads`, `rates ×0.50`.
    pub load: String,
    #[serde(flatten)]
    pub report: Report,
    pub series: Series,
    /// `bench --rate`'s: what `plan --predict` gives for the same layout and arrivals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted: Option<Report>,
}

/// What a report says.
pub struct Document {
    /// `corral bench` or `corral plan --predict`.
    pub title: String,
    /// Measured (bench) or predicted (plan).
    pub measured: bool,
    pub settings: Vec<(String, String)>,
    pub points: Vec<Point>,
    /// The layout's core map (`Layout::svg`).
    pub layout_svg: String,
}

#[derive(Serialize)]
struct Json<'a> {
    title: &'a str,
    measured: bool,
    settings: serde_json::Map<String, serde_json::Value>,
    points: &'a [Point],
}

/// Writes both files.
pub fn write(target: Target, document: &Document) -> anyhow::Result<()> {
    let settings = document.settings.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let json = Json { title: &document.title, measured: document.measured, settings, points: &document.points };
    let (json_path, mut json_file) = target.json;
    serde_json::to_writer_pretty(&mut json_file, &json)
        .map_err(anyhow::Error::from)
        .and_then(|()| json_file.write_all(b"\n").map_err(anyhow::Error::from))
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let (html_path, mut html_file) = target.html;
    html_file.write_all(html(document).as_bytes()).with_context(|| format!("cannot write {}", html_path.display()))?;
    eprintln!("report: {} and {}", html_path.display(), json_path.display());
    Ok(())
}

fn section(out: &mut String, id: &str, title: &str, note: &str, chart: &str) {
    out.push_str(&format!(
        "<section id=\"{id}\" data-chart=\"{id}\"><h2>{}</h2><p class=\"note\">{}</p>\n{chart}\n</section>\n",
        escape(title),
        escape(note)
    ));
}

fn html(document: &Document) -> String {
    let what = if document.measured { "measured" } else { "predicted" };
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0} report</title>\n<style>\
         body{{font:14px/1.4 sans-serif;margin:1em 2em;color:#1b1b1b}} h1{{font-size:1.3em}} h2{{font-size:1.1em;margin-top:1.6em}}\
         table{{border-collapse:collapse;margin:.5em 0}} th,td{{border:1px solid #bbb;padding:.2em .5em;text-align:left}}\
         td.num{{text-align:right;font-variant-numeric:tabular-nums}} .note{{color:#444;font-size:.9em}} svg{{max-width:100%;height:auto}}\
         </style></head><body>\n<h1>{0} report ({what})</h1>\n",
        escape(&document.title)
    );
    let Some(top) = document.points.last() else { return out + "<p>No load point ran.</p></body></html>\n" };
    let names: Vec<&str> = top.report.models.iter().map(|m| m.name.as_str()).collect();

    // 1. Throughput against latency, across the load points.
    let mut lines = Vec::new();
    for (m, name) in names.iter().enumerate() {
        for (label, pick) in [("p50", 0), ("p99", 1)] {
            let points = document
                .points
                .iter()
                .filter_map(|p| p.report.models.get(m))
                .map(|row| (row.throughput_per_s, if pick == 0 { row.p50_ms } else { row.p99_ms }))
                .collect();
            lines.push(Line { name: format!("{name} {label}"), points, dots_only: false });
            let predicted: Vec<(f64, f64)> = document
                .points
                .iter()
                .filter_map(|p| p.predicted.as_ref()?.models.iter().find(|row| row.name == *name))
                .map(|row| (row.throughput_per_s, if pick == 0 { row.p50_ms } else { row.p99_ms }))
                .collect();
            if !predicted.is_empty() {
                lines.push(Line { name: format!("{name} {label} (predicted)"), points: predicted, dots_only: false });
            }
        }
    }
    let chart = Lines {
        title: format!("Throughput against latency per model ({what}, {} load points)", document.points.len()),
        x_label: "throughput (calls/s)".into(),
        y_label: "latency (ms)".into(),
        series: lines,
        marks: Vec::new(),
        y_min_top: 0.0,
    }
    .svg();
    let mut table = String::from(
        "<table><tr><th>load</th><th>model</th><th>offered/s</th><th>throughput/s</th><th>p50 ms</th><th>p99 ms</th><th>queue ms</th><th>compute ms</th><th>failed</th></tr>",
    );
    let rows = document.points.iter().flat_map(|point| {
        let predicted = point
            .predicted
            .iter()
            .flat_map(move |p| p.models.iter().map(move |row| (format!("{} (predicted)", point.load), row)));
        point.report.models.iter().map(move |row| (point.load.clone(), row)).chain(predicted)
    });
    for (load, row) in rows {
        {
            table += &format!(
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{:.1}</td><td class=\"num\">{:.2}</td><td class=\"num\">{:.2}</td><td class=\"num\">{:.2}</td><td class=\"num\">{:.2}</td><td class=\"num\">{}</td></tr>",
                escape(&load),
                escape(&row.name),
                row.offered_per_s,
                row.throughput_per_s,
                row.p50_ms,
                row.p99_ms,
                row.queue_ms.mean,
                row.compute_ms,
                row.failures
            );
        }
    }
    table += "</table>";
    section(
        &mut out,
        "throughput-latency",
        "Throughput against latency",
        "Each point is one load point of the sweep; each line (p50 or p99 of a model, measured or predicted) has its own pattern and marker, named in the legend.",
        &(chart + &table),
    );

    // 2. Each core's utilisation over the highest load point's run, moves marked.
    let series = &top.series;
    let rows = series
        .core_busy
        .iter()
        .enumerate()
        .map(|(c, steps)| (format!("nc{}", top.report.cores.get(c).map_or(c, |r| r.index)), steps.clone()))
        .collect();
    let marks =
        series.moves.iter().map(|m| Mark { x: m.t_s, label: format!("{} {} at {:.2} s", m.model, m.kind, m.t_s) });
    let chart = Heat {
        title: format!("Core utilisation over time ({}, {what})", top.load),
        step: series.interval_s,
        rows,
        marks: marks.collect(),
    }
    .svg();
    let moves = if series.moves.is_empty() {
        "No autopilot move in this run.".to_owned()
    } else {
        format!("{} autopilot moves, marked ▼ with dotted lines (hover for which).", series.moves.len())
    };
    section(&mut out, "utilisation", "Core utilisation", &format!("{} s steps; {moves}", series.interval_s), &chart);

    // 3. Queue against compute, per model, at the highest load point.
    let chart = Bars {
        title: format!("Queue against compute per model ({}, {what})", top.load),
        x_label: "mean time per call (ms)".into(),
        parts: vec!["queue".into(), "compute".into()],
        rows: top.report.models.iter().map(|m| (m.name.clone(), vec![m.queue_ms.mean, m.compute_ms])).collect(),
    }
    .svg();
    section(
        &mut out,
        "queue-compute",
        "Queue against compute",
        "Means over the calls that started: queue from arrival to the execution's start (waiting for cores), compute from the start to the answer.",
        &chart,
    );

    // 4. The layout.
    section(
        &mut out,
        "layout",
        "Layout",
        "Each model's instances on the cores; a hatched core is shared by several models.",
        &document.layout_svg,
    );

    out += "<section id=\"settings\"><h2>Settings</h2><table>";
    for (key, value) in &document.settings {
        out += &format!("<tr><th>{}</th><td>{}</td></tr>", escape(key), escape(value));
    }
    out + "</table></section>\n</body></html>\n"
}

/// The load points of `--sweep n`: fractions k/n of the given load, k = 1..=n.
pub fn fractions(sweep: Option<usize>) -> anyhow::Result<Vec<f64>> {
    match sweep {
        None => Ok(vec![1.0]),
        Some(0) => bail!("--sweep 0: give the number of load points, 1 or more"),
        Some(n) => Ok((1..=n).map(|k| k as f64 / n as f64).collect()),
    }
}

/// The command line, for the settings.
pub fn command_line() -> String {
    std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_fill_their_steps_in_proportion() {
        let busy = busy_from_executions(2, [(0, 0.0, 0.375), (1, 0.25, 0.5), (5, 0.0, 1.0)].into_iter());
        assert_eq!(busy, vec![vec![1.0, 0.5], vec![0.0, 1.0]]);
        let calls = vec![vec![
            Call { arrival: 0.0, start: Some(0.0), end: 0.1, ok: true },
            Call { arrival: 0.0, start: Some(0.1), end: 0.3, ok: true },
            Call { arrival: 0.0, start: None, end: 0.3, ok: false },
        ]];
        assert_eq!(Series::new(&calls, Vec::new(), Vec::new()).answered_per_s, vec![vec![4.0, 4.0]]);
        assert_eq!(fractions(Some(4)).expect("points"), vec![0.25, 0.5, 0.75, 1.0]);
        assert!(fractions(Some(0)).is_err());
    }
}
