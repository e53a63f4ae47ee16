//! The live page on the metrics port (`/dashboard`, its events at `/dashboard/events`, its first
//! view as a script at `/dashboard/first.js`): every
//! core of this server's device with its owner (pid, command, from the host's registry, so
//! other corral processes too), the instances on it and its busy share; every holder's models;
//! this server's models with their versions, readiness, engine, instance bounds, rate,
//! latency and queue against compute; and the placement's time line (the runtime's ring of
//! the last ten minutes: loads, the autopilot's moves, cores leaving and joining).
//!
//! It stays off the inference port: it shows every holder's pid and command line, and
//! `deploy/` binds the inference ports to all addresses.
//!
//! # Cost
//!
//! One producer task builds one JSON view a second (two registry snapshots through
//! `corral_view`, the code `corral top` uses) while at least one page is open, and stops when
//! the last closes: with no page open nothing runs. Each open page has one task that sends
//! that shared view, plus the time line events it has not seen, as a server-sent event. At
//! most [`PAGES_MAX`] pages at once; the next is answered 503 in words. Shutdown ends every
//! stream, so a page never holds the server's drain open.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    http::{StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use corral_runtime::sync::lock;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::state::ServerState;

/// Pages open at once, at most.
pub const PAGES_MAX: usize = 16;
/// How often a page gets a new view.
pub const PERIOD: Duration = Duration::from_secs(1);

/// The page: one file, its script and styles inline (no CDN, no build step).
const PAGE: &str = include_str!("dashboard.html");

/// The open pages and their shared producer.
#[derive(Default)]
pub struct Dashboard {
    pages: AtomicUsize,
    /// The producer's channel while it runs; a page subscribes under this lock, and the
    /// producer stops under it when no page is left.
    feed: Mutex<Option<Arc<watch::Sender<Arc<str>>>>>,
}

impl Dashboard {
    /// Event streams open now (the metrics' `corral_dashboard_pages`).
    pub fn pages(&self) -> usize {
        self.pages.load(Ordering::Relaxed)
    }

    /// Counts a page in, or says why not.
    fn open(self: &Arc<Self>) -> Option<PageGuard> {
        let counted =
            self.pages.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < PAGES_MAX).then_some(n + 1));
        counted.ok().map(|_| PageGuard(self.clone()))
    }

    /// A receiver of the shared view, starting the producer when none runs.
    fn subscribe(self: &Arc<Self>, state: &Arc<ServerState>) -> watch::Receiver<Arc<str>> {
        let mut feed = lock(&self.feed);
        if let Some(sender) = feed.as_ref() {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(Arc::<str>::from(""));
        let sender = Arc::new(sender);
        *feed = Some(sender.clone());
        tokio::spawn(produce(self.clone(), state.clone(), sender));
        receiver
    }
}

/// A page counted in [`Dashboard::pages`] until dropped.
struct PageGuard(Arc<Dashboard>);

impl Drop for PageGuard {
    fn drop(&mut self) {
        self.0.pages.fetch_sub(1, Ordering::AcqRel);
    }
}

fn full() -> Response {
    let text = format!(
        "{PAGES_MAX} dashboard pages are open on this server, the most it serves at once\nhint: close one (or a tab that holds one) and reload"
    );
    (StatusCode::SERVICE_UNAVAILABLE, text).into_response()
}

/// The page and its events, for the metrics port; `on` false answers 404 saying how to turn
/// it on. `stop` ends every stream when the server shuts down.
pub fn router(state: Arc<ServerState>, dashboard: Arc<Dashboard>, on: bool, stop: watch::Receiver<bool>) -> Router {
    if !on {
        let off = || async {
            (StatusCode::NOT_FOUND, "the dashboard is off on this server\nhint: start corral serve with --dashboard on")
        };
        return Router::new()
            .route("/dashboard", get(off))
            .route("/dashboard/first.js", get(off))
            .route("/dashboard/events", get(off));
    }
    let page_dashboard = dashboard.clone();
    Router::new()
        .route(
            "/dashboard",
            get(move || {
                let full_now = page_dashboard.pages() >= PAGES_MAX;
                async move {
                    if full_now {
                        return full();
                    }
                    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], PAGE)
                        .into_response()
                }
            }),
        )
        .route(
            "/dashboard/first.js",
            get({
                let (state, dashboard) = (state.clone(), dashboard.clone());
                move || first(state.clone(), dashboard.clone())
            }),
        )
        .route(
            "/dashboard/events",
            get(move || {
                let (state, dashboard, stop) = (state.clone(), dashboard.clone(), stop.clone());
                async move { events(state, dashboard, stop) }
            }),
        )
}

/// The page's first view as a script the page loads before its own: the page then draws at
/// once, and its load event (what a headless browser's screenshot waits for) comes with data.
/// `window.corralFirst` is null when no view came within two periods.
async fn first(state: Arc<ServerState>, dashboard: Arc<Dashboard>) -> Response {
    let mut views = dashboard.subscribe(&state);
    let waited = tokio::time::timeout(2 * PERIOD, views.wait_for(|view| !view.is_empty())).await;
    let script = match waited {
        Ok(Ok(view)) => {
            let view = view.clone();
            let timeline = serde_json::to_string(&state.runtime.timeline_since(0)).unwrap_or_else(|_| "[]".to_owned());
            format!("window.corralFirst = {{\"view\":{view},\"timeline\":{timeline}}};\n")
        }
        _ => "window.corralFirst = null;\n".to_owned(),
    };
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], script)
        .into_response()
}

/// One page's stream: the shared view each period, with the time line events it has not
/// seen yet.
fn events(state: Arc<ServerState>, dashboard: Arc<Dashboard>, mut stop: watch::Receiver<bool>) -> Response {
    let Some(guard) = dashboard.open() else { return full() };
    let mut views = dashboard.subscribe(&state);
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(2);
    tokio::spawn(async move {
        let _counted = guard;
        let mut seen = 0;
        loop {
            tokio::select! {
                changed = views.changed() => if changed.is_err() { break },
                _ = stop.wait_for(|&stopped| stopped) => break,
                _ = sender.closed() => break,
            }
            let view = views.borrow_and_update().clone();
            if view.is_empty() {
                continue;
            }
            let timeline = state.runtime.timeline_since(seen);
            if let Some(last) = timeline.last() {
                seen = last.seq;
            }
            let timeline = serde_json::to_string(&timeline).unwrap_or_else(|_| "[]".to_owned());
            let data = format!("{{\"view\":{view},\"timeline\":{timeline}}}");
            // A reader that stopped reading must not hold this task past shutdown.
            tokio::select! {
                sent = sender.send(Ok(Event::default().event("view").data(data))) => if sent.is_err() { break },
                _ = stop.wait_for(|&stopped| stopped) => break,
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(receiver)).keep_alive(KeepAlive::default()).into_response()
}

/// Builds a view each period while any page listens; stops (and lets the next page start a
/// new one) when none does.
async fn produce(dashboard: Arc<Dashboard>, state: Arc<ServerState>, sender: Arc<watch::Sender<Arc<str>>>) {
    let registry = state.runtime.registry();
    // Reading the registry is a few small files: read here, once a period, rather than on a
    // thread of its own. The first view comes a quarter period after the first snapshot, so
    // a page shows something at once; then one each period.
    let mut previous = build(&state, registry.as_ref(), None, 0).1;
    let mut wait = PERIOD / 4;
    loop {
        tokio::time::sleep(wait).await;
        wait = PERIOD;
        {
            let mut feed = lock(&dashboard.feed);
            if sender.receiver_count() == 0 {
                *feed = None;
                return;
            }
        }
        let (view, next) = build(&state, registry.as_ref(), Some(previous), dashboard.pages());
        previous = next;
        if let Some(view) = view {
            sender.send_replace(Arc::from(view));
        }
    }
}

/// This server's per-model counters at a snapshot, to turn into rates.
#[derive(Clone, Default)]
struct Rates {
    /// Per `name@version`: success count, queue ns, infer ns, failures.
    counters: std::collections::BTreeMap<String, (u64, u64, u64, u64)>,
}

fn rates(state: &ServerState) -> Rates {
    use std::sync::atomic::Ordering::Relaxed;
    let counters = state.all_counters().into_iter().map(|(name, version, c)| {
        let read = (
            c.success.count.load(Relaxed),
            c.queue.ns.load(Relaxed),
            c.compute.infer_ns.load(Relaxed),
            c.fail.count.load(Relaxed),
        );
        (format!("{name}@{version}"), read)
    });
    Rates { counters: counters.collect() }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The view since `before` (`None` on the first period: then there is nothing to show yet,
/// only the snapshot to measure from).
fn build(
    state: &ServerState,
    registry: Option<&corral_view::Registry>,
    before: Option<(corral_view::Snapshot, Rates)>,
    pages: usize,
) -> (Option<String>, (corral_view::Snapshot, Rates)) {
    let rates_now = rates(state);
    let snapshot = match registry.map(corral_view::Snapshot::take) {
        Some(Ok(snapshot)) => snapshot,
        // Without a registry the page still shows this server's models.
        _ => corral_view::Snapshot::empty(),
    };
    let Some((old_snapshot, old_rates)) = before else { return (None, (snapshot, rates_now)) };
    let view = corral_view::View::between(&old_snapshot, &snapshot);
    let json = render(state, &view, &old_rates, &rates_now, pages);
    (Some(json.to_string()), (snapshot, rates_now))
}

/// An instance's cores by device number, as every other part of the page numbers them
/// (`nc3`, `nc2-nc3`; the runtime's spans are process-relative).
fn global_span(state: &ServerState, span: &corral_runtime::CoreSpan) -> String {
    let cores: Vec<String> =
        (span.first..span.first + span.count).map(|c| format!("nc{}", state.runtime.global(c))).collect();
    cores.join("+")
}

fn ms(seconds: Option<f64>) -> Value {
    seconds.map_or(Value::Null, |s| json!((s * 1e6).round() / 1e3))
}

fn render(state: &ServerState, view: &corral_view::View, old: &Rates, new: &Rates, pages: usize) -> Value {
    let period = view.period.as_secs_f64();
    let cores: Vec<Value> = view
        .cores
        .iter()
        .map(|c| {
            json!({
                "index": c.index,
                "held": c.held,
                "owners": c.owners.iter().map(|o| json!({"pid": o.pid, "command": o.command})).collect::<Vec<_>>(),
                "instances": c.instances,
                "busy": (c.utilization * 1000.0).round() / 1000.0,
                "executions": c.executions,
                "switches": c.switches,
                "model": c.model,
            })
        })
        .collect();
    let processes: Vec<Value> = view
        .processes
        .iter()
        .map(|p| {
            let models: Vec<Value> = p
                .models
                .iter()
                .map(|m| {
                    json!({
                        "name": m.name,
                        "instances": m.instances,
                        "rate": m.completed as f64 / period,
                        "failed": m.failed,
                        "p50_ms": ms(m.latency.p50),
                        "p99_ms": ms(m.latency.p99),
                        "compute_p50_ms": ms(m.compute.p50),
                        "queue_depth": m.queue_depth.iter().sum::<u64>(),
                        "engine": m.engine,
                        "moves": {"grow": m.moves.grow, "shrink": m.moves.shrink, "move": m.moves.relocate},
                    })
                })
                .collect();
            json!({
                "pid": p.pid,
                "command": p.command,
                "tag": p.tag,
                "unreadable": p.unreadable,
                "cores": p.cores,
                "cpu_percent": ((p.cpu_percent.0 + p.cpu_percent.1) * 10.0).round() / 10.0,
                "models": models,
            })
        })
        .collect();
    let published: std::collections::BTreeMap<&str, &corral_view::ModelView> = view
        .processes
        .iter()
        .filter(|p| p.pid == std::process::id())
        .flat_map(|p| p.models.iter().map(|m| (m.name.as_str(), m)))
        .collect();
    let index = state.index();
    let mut models: Vec<Value> = Vec::new();
    for served in state.served() {
        let key = format!("{}@{}", served.name, served.number);
        let (done0, queue0, infer0, fail0) = old.counters.get(&key).copied().unwrap_or_default();
        let (done1, queue1, infer1, fail1) = new.counters.get(&key).copied().unwrap_or_default();
        let done = done1.saturating_sub(done0);
        let mean_ms = |a: u64, b: u64| {
            if done == 0 { Value::Null } else { json!((b.saturating_sub(a) as f64 / done as f64 / 1e3).round() / 1e3) }
        };
        // An ensemble holds no cores: its steps show as the models they are.
        let Some(model) = served.model() else { continue };
        let bounds = model.bounds();
        let engine = model.engine();
        let live = published.get(model.name());
        models.push(json!({
            "name": served.name,
            "version": served.version,
            "ready": true,
            "platform": served.config.platform,
            "engine": engine.engine,
            "engine_reason": engine.reason,
            "instances": model.instances().iter().map(|s| global_span(state, s)).collect::<Vec<_>>(),
            "min": bounds.min,
            "max": bounds.max,
            "rate": done as f64 / period,
            "failed": fail1.saturating_sub(fail0),
            "p50_ms": live.map_or(Value::Null, |m| ms(m.latency.p50)),
            "p99_ms": live.map_or(Value::Null, |m| ms(m.latency.p99)),
            "queue_ms": mean_ms(queue0, queue1),
            "compute_ms": mean_ms(infer0, infer1),
        }));
    }
    for entry in index.iter().filter(|e| e.state != Some("READY")) {
        models.push(json!({
            "name": entry.name,
            "version": entry.version,
            "ready": false,
            "state": entry.state.unwrap_or("not loaded"),
            "reason": entry.reason,
        }));
    }
    let device = state.runtime.device().to_string();
    json!({
        "at": unix_ms(),
        "period_s": period,
        "server": {"pid": std::process::id(), "device": device, "pages": pages, "autopilot": state.runtime.autopilot()},
        "cores": cores,
        "processes": processes,
        "models": models,
        "cpu_busy": view.cpu.iter().map(|c| (c.busy() * 10.0).round() / 10.0).collect::<Vec<_>>(),
    })
}
