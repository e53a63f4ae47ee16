//! `corral top`: what runs where, live, in neuron-top's layout: a row per core (owner,
//! instances, utilisation bar, executions/s, switches/s), a table of processes and their
//! models (requests/s, p50 and p99 latency, failures/s, queue depth), and the host's vCPU
//! and memory use.
//!
//! On a terminal it is a full-screen UI (ratatui + crossterm): `q` (or Esc, Ctrl-C) quits,
//! `tab` cycles the process filter (all, then each process), `s` cycles the core sort. The
//! terminal is restored however it exits: on return, on error, on panic (ratatui's hook), and
//! on SIGTERM/SIGHUP (a signal-hook thread acts on them, as the loop may be stuck in
//! crossterm's reader when the terminal is gone). When stdout is not a terminal it prints the same
//! frame as plain text every interval; `--once` prints one frame and exits.

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use anyhow::Context;
use corral_cores::Registry;
use crossterm::{
    event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    execute,
};
use ratatui::{
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Block, Borders, Paragraph, Row, Table},
};

use corral_view::{Snapshot, View};

use crate::{cli::TopArgs, monitor::parse_period, settings::take_settings, table};

/// How the core rows are ordered; `s` cycles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sort {
    Core,
    Utilization,
    Executions,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Core => Sort::Utilization,
            Sort::Utilization => Sort::Executions,
            Sort::Executions => Sort::Core,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Sort::Core => "core",
            Sort::Utilization => "utilisation",
            Sort::Executions => "executions/s",
        }
    }
}

/// One frame's text: what both the UI and plain output show.
struct Frame {
    title: String,
    cores: Vec<Vec<String>>,
    models: Vec<Vec<String>>,
    host: String,
}

const CORE_HEADER: [&str; 6] = ["CORE", "OWNER", "INSTANCES", "UTIL", "EXEC/S", "SWITCH/S"];
const MODEL_HEADER: [&str; 9] = ["PID", "COMMAND", "MODEL", "ENGINE", "REQ/S", "P50", "P99", "FAIL/S", "QUEUE"];
const BAR_WIDTH: usize = 10;

fn frame(view: &View, device: &str, filter: Option<u32>, sort: Sort) -> Frame {
    let per_s = |n: u64| format!("{:.1}", n as f64 / view.period.as_secs_f64());
    let mut cores: Vec<_> =
        view.cores.iter().filter(|c| filter.is_none_or(|pid| c.owners.iter().any(|o| o.pid == pid))).collect();
    match sort {
        Sort::Core => {}
        Sort::Utilization => cores.sort_by(|a, b| b.utilization.total_cmp(&a.utilization)),
        Sort::Executions => cores.sort_by_key(|c| std::cmp::Reverse(c.executions)),
    }
    let core_rows = cores
        .iter()
        .map(|c| {
            let owner = match c.owners.as_slice() {
                [] if c.held => "held (unknown)".to_owned(),
                [] => "-".to_owned(),
                owners => {
                    let each = owners.iter().map(|o| format!("{} {}", o.pid, short(&command_name(&o.command), 24)));
                    each.collect::<Vec<_>>().join(", ")
                }
            };
            let filled = (c.utilization * BAR_WIDTH as f64).round() as usize;
            let bar =
                format!("{}{} {:>3.0}%", "█".repeat(filled), "·".repeat(BAR_WIDTH - filled), c.utilization * 100.0);
            vec![
                format!("nc{}", c.index),
                owner,
                if c.instances.is_empty() { "-".to_owned() } else { c.instances.join(" ") },
                bar,
                per_s(c.executions),
                per_s(c.switches),
            ]
        })
        .collect();
    let seconds = |s: Option<f64>| s.map_or("-".to_owned(), |s| format!("{:.2}ms", s * 1e3));
    let mut model_rows = Vec::new();
    for process in view.processes.iter().filter(|p| filter.is_none_or(|pid| p.pid == pid)) {
        let command = short(&command_name(&process.command), 24);
        if let Some(why) = &process.unreadable {
            model_rows.push(vec![process.pid.to_string(), command.clone(), format!("(unreadable: {why})")]);
        }
        for model in &process.models {
            model_rows.push(vec![
                process.pid.to_string(),
                command.clone(),
                model.name.clone(),
                if model.engine.is_empty() { "-".to_owned() } else { model.engine.clone() },
                per_s(model.completed + model.failed),
                seconds(model.latency.p50),
                seconds(model.latency.p99),
                per_s(model.failed),
                model.queue_depth.iter().sum::<u64>().to_string(),
            ]);
        }
    }
    let cpu = view.cpu.first().copied().unwrap_or_default();
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let host = format!(
        "vCPU {:.1}% (user {:.1}%, system {:.1}%) over {} CPUs   memory {:.1} of {:.1} GiB",
        cpu.busy(),
        cpu.user + cpu.nice,
        cpu.system + cpu.irq + cpu.soft_irq,
        view.cpu.len().saturating_sub(1),
        gib(view.memory.used),
        gib(view.memory.total),
    );
    let filter = filter.map_or("all".to_owned(), |pid| format!("pid {pid}"));
    let title = format!(
        "corral top: {device}, {} cores, over {:.1}s, processes: {filter}, sort: {}",
        view.cores.len(),
        view.period.as_secs_f64(),
        sort.name()
    );
    Frame { title, cores: core_rows, models: model_rows, host }
}

/// A command line without its program's folder (`/usr/bin/python3 x.py` → `python3 x.py`).
fn command_name(command: &str) -> String {
    let (program, rest) = command.split_once(' ').unwrap_or((command, ""));
    let program = program.rsplit('/').next().unwrap_or(program);
    if rest.is_empty() { program.to_owned() } else { format!("{program} {rest}") }
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max { text.to_owned() } else { text.chars().take(max - 1).collect::<String>() + "…" }
}

fn text(frame: &Frame) -> String {
    let with_header = |header: &[&str], rows: &[Vec<String>]| {
        let mut all = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
        all.extend(rows.iter().cloned());
        table::render(&all)
    };
    let models = if frame.models.is_empty() {
        "no process publishes counters\n".to_owned()
    } else {
        with_header(&MODEL_HEADER, &frame.models)
    };
    format!("{}\n\n{}\n{}\n{}\n", frame.title, with_header(&CORE_HEADER, &frame.cores), models, frame.host)
}

pub fn run(args: &TopArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    let interval = match &args.interval {
        Some(text) => parse_period(text).context("--interval")?,
        None => Duration::from_secs(1),
    };
    let registry = take_settings(&args.device, None).open_registry(lookup)?;
    let device = registry.device().spec().to_string();
    if args.once || !std::io::stdout().is_terminal() {
        return plain(&registry, &device, interval, args.once);
    }
    interactive(&registry, &device, interval)
}

fn plain(registry: &Registry, device: &str, interval: Duration, once: bool) -> anyhow::Result<()> {
    let mut before = Snapshot::take(registry).context("cannot read the registry")?;
    loop {
        std::thread::sleep(interval.saturating_sub(before.at.elapsed()));
        let after = Snapshot::take(registry).context("cannot read the registry")?;
        let out = text(&frame(&View::between(&before, &after), device, None, Sort::Core));
        let mut stdout = std::io::stdout().lock();
        if stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()).is_err() || once {
            return Ok(());
        }
        drop(stdout);
        println!();
        before = after;
    }
}

/// Puts the terminal back as it was: leaves raw mode and the alternate screen (ratatui's
/// restore), shows the cursor. Safe to call more than once.
fn restore() {
    ratatui::restore();
    let _ = execute!(std::io::stdout(), crossterm::cursor::Show);
}

fn interactive(registry: &Registry, device: &str, interval: Duration) -> anyhow::Result<()> {
    // crossterm's event reader can spin on a terminal that hung up (reads of 0 bytes, never
    // returning to the loop), so a thread of its own, not the loop, acts on SIGTERM and
    // SIGHUP: it restores what it can and exits.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP])
        .context("cannot install a signal handler")?;
    std::thread::Builder::new()
        .name("corral-top-stop".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                restore();
                std::process::exit(0);
            }
        })
        .context("cannot start the signal thread")?;
    // Raw mode, the alternate screen, and a panic hook that restores both.
    let mut terminal = ratatui::try_init().context("cannot take over the terminal")?;
    let result = ui_loop(&mut terminal, registry, device, interval);
    drop(terminal); // shows the cursor it hid
    restore();
    result
}

fn ui_loop(
    terminal: &mut ratatui::DefaultTerminal,
    registry: &Registry,
    device: &str,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut before = Snapshot::take(registry).context("cannot read the registry")?;
    let mut view: Option<View> = None;
    let (mut filter, mut sort): (Option<u32>, Sort) = (None, Sort::Core);
    let mut next_sample = Instant::now() + interval;
    loop {
        let pids: Vec<u32> = view.as_ref().map(|v| v.processes.iter().map(|p| p.pid).collect()).unwrap_or_default();
        if filter.is_some_and(|pid| !pids.contains(&pid)) {
            filter = None; // that process ended
        }
        terminal
            .draw(|f| match &view {
                Some(view) => draw(f, &frame(view, device, filter, sort)),
                None => f.render_widget(Paragraph::new(format!("corral top: {device}: measuring…")), f.area()),
            })
            .context("cannot draw")?;
        let wait = next_sample.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        if event::poll(wait).context("cannot read the terminal")?
            && let Event::Key(key) = event::read().context("cannot read the terminal")?
            && key.kind == KeyEventKind::Press
        {
            match key.code {
                KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                KeyCode::Tab => {
                    filter = match filter.and_then(|pid| pids.iter().position(|&p| p == pid)) {
                        None => pids.first().copied(),
                        Some(i) => pids.get(i + 1).copied(),
                    }
                }
                KeyCode::Char('s') => sort = sort.next(),
                _ => {}
            }
        }
        if Instant::now() >= next_sample {
            let after = Snapshot::take(registry).context("cannot read the registry")?;
            view = Some(View::between(&before, &after));
            before = after;
            next_sample = Instant::now() + interval;
        }
    }
}

fn draw(f: &mut ratatui::Frame, frame: &Frame) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let [title, cores, models, host, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(frame.cores.len() as u16 + 3),
        Constraint::Min(4),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(Line::styled(frame.title.clone(), bold)), title);
    let widths = |rows: &[Vec<String>], header: &[&str]| -> Vec<Constraint> {
        (0..header.len())
            .map(|c| {
                let widest = rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0);
                Constraint::Length(widest.max(header[c].len()) as u16)
            })
            .collect()
    };
    let table = |rows: &[Vec<String>], header: &[&'static str], name: &'static str| -> Table<'static> {
        Table::new(rows.iter().map(|r| Row::new(r.clone())), widths(rows, header))
            .header(Row::new(header.to_vec()).style(bold))
            .block(Block::default().borders(Borders::TOP).title(name))
            .column_spacing(2)
    };
    f.render_widget(table(&frame.cores, &CORE_HEADER, "cores"), cores);
    f.render_widget(table(&frame.models, &MODEL_HEADER, "processes and models"), models);
    f.render_widget(Paragraph::new(frame.host.clone()), host);
    f.render_widget(Paragraph::new("q quit   tab next process   s sort"), keys);
}
