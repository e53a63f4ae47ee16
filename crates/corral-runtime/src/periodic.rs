//! A runtime's periodic threads (the live publication, the autopilot and cores follower): a
//! named thread that runs one step every interval until it is stopped, the one implementation
//! both use.
//!
//! # Protocol
//!
//! 1. [`Periodic::start`] spawns the thread with the receiving end of a channel nobody sends
//!    on; the runtime keeps the sending end.
//! 2. The thread runs its step (first at once, or first after one interval), then waits on
//!    the channel for one interval, and again, as long as the wait times out.
//! 3. [`Periodic::stop`] drops the sending end, which ends the wait at once (disconnected),
//!    and joins the thread. A step under way finishes first: stopping waits at most one step.
//!
//! The thread holds only what its step holds (the runtime's parts by `Arc`, never the
//! runtime), so stopping it can never wait on the runtime it belongs to.

use std::{
    sync::mpsc::{self, RecvTimeoutError},
    thread::JoinHandle,
    time::Duration,
};

/// When a periodic thread runs its first step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum First {
    /// As soon as it starts (a publication is readable from the start).
    Now,
    /// One interval after it starts (nothing has happened to look at before).
    AfterInterval,
}

/// A running periodic thread; [`Periodic::stop`] ends it.
pub(crate) struct Periodic {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Periodic {
    /// Starts thread `name` running `step` every `interval` from `first`; `None`, with the
    /// warning `failed` (which says what is lost), when no thread can start.
    pub(crate) fn start(
        name: &str,
        interval: Duration,
        first: First,
        failed: &str,
        mut step: impl FnMut() + Send + 'static,
    ) -> Option<Periodic> {
        let (stop, stopped) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            if first == First::Now {
                step();
            }
            loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => step(),
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        match spawned {
            Ok(thread) => Some(Periodic { stop, thread }),
            Err(error) => {
                tracing::warn!(%error, "{failed}");
                None
            }
        }
    }

    /// Stops the thread and waits for it (at most the step it is running).
    pub(crate) fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}
