//! The runtime's log records, handed to Python's `logging` (logger `corral`).
//!
//! A `tracing` layer queues each record at INFO and above (the autopilot's moves, load
//! notices, warnings); a daemon thread of the package (`corral._forward_logs`) takes them
//! with [`next_logs`] and logs them under the GIL. Runtime threads never take the GIL here:
//! one that did could wait on a Python thread that waits on the runtime. Records beyond
//! [`QUEUE`] unread ones are dropped, and the next batch says how many. At interpreter exit
//! [`stop_logs`] ends the reader (after the last records) so no thread of the package is
//! inside Rust when Python finalizes.

use std::{
    fmt::Write as _,
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use crossbeam_channel::{Receiver, Sender};
use pyo3::prelude::*;
use tracing::{Event, Level, Subscriber, field::Field};
use tracing_subscriber::{layer::Context, prelude::*};

/// Unread records kept; a Python process that never starts the reader loses no more memory.
const QUEUE: usize = 4096;
/// How long one [`next_logs`] waits for a first record, so its thread sees shutdown.
const WAIT_MAX: Duration = Duration::from_secs(1);

/// One record: Python's level number, the emitting module and the text.
type Record = (u32, String, String);

static CHANNEL: OnceLock<(Sender<Record>, Receiver<Record>)> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
static STOPPED: AtomicBool = AtomicBool::new(false);
/// Wakes a waiting [`next_logs`] at [`stop_logs`].
static WAKE: OnceLock<(Sender<()>, Receiver<()>)> = OnceLock::new();

fn wake() -> &'static (Sender<()>, Receiver<()>) {
    WAKE.get_or_init(|| crossbeam_channel::bounded(1))
}

fn channel() -> &'static (Sender<Record>, Receiver<Record>) {
    CHANNEL.get_or_init(|| crossbeam_channel::bounded(QUEUE))
}

/// Installs the forwarding layer as this process's subscriber, unless one is set already.
pub(crate) fn install() {
    let layer = Forward.with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    // Another extension module may have set a subscriber first: it keeps the records then.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// The queued records, `(level, target, message)` with `logging`'s level numbers; waits up to
/// `timeout` seconds (at most [`WAIT_MAX`]) for the first, with the GIL released. `None` once
/// [`stop_logs`] was called and every record was handed over.
#[pyfunction]
pub(crate) fn next_logs(py: Python<'_>, timeout: f64) -> Option<Vec<Record>> {
    let wait = Duration::try_from_secs_f64(timeout).unwrap_or(WAIT_MAX).min(WAIT_MAX);
    let receiver = &channel().1;
    py.detach(|| {
        let mut records = Vec::new();
        if !STOPPED.load(Ordering::Acquire) {
            crossbeam_channel::select! {
                recv(receiver) -> record => records.extend(record),
                recv(wake().1) -> _ => {}
                default(wait) => {}
            }
        }
        records.extend(receiver.try_iter());
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let text = format!("{dropped} log records were dropped: Python read them too slowly");
            records.push((python_level(Level::WARN), "corral".to_owned(), text));
        }
        (!records.is_empty() || !STOPPED.load(Ordering::Acquire)).then_some(records)
    })
}

/// Ends [`next_logs`]' reader: its next call hands over what is left, the one after returns
/// `None`.
#[pyfunction]
pub(crate) fn stop_logs() {
    STOPPED.store(true, Ordering::Release);
    let _ = wake().0.try_send(());
}

/// `logging`'s number for a level.
fn python_level(level: Level) -> u32 {
    match level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

struct Forward;

impl<S: Subscriber> tracing_subscriber::Layer<S> for Forward {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        let metadata = event.metadata();
        let record = (python_level(*metadata.level()), metadata.target().to_owned(), text.0);
        if channel().0.try_send(record).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An event's message, then its other fields as ` key=value`, as the CLI's log lines read.
#[derive(Default)]
struct Text(String);

impl tracing::field::Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let fields = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}{fields}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}
