//! asyncio: `Model.infer_async` returns an `asyncio.Future` that no thread blocks on.
//!
//! 1. The caller, in a running event loop and holding the GIL, submits the call, stores its
//!    `Reply` in a [`Pending`], and polls it once with a waker made from that `Pending`. An
//!    answer already there resolves the future at once.
//! 2. Otherwise the worker that answers wakes the waker, which only sends the `Pending` down
//!    a channel: a worker never waits for the GIL.
//! 3. The completion thread (`corral-asyncio`, started at the first async call) takes the
//!    GIL, converts the outputs, and hands them to the future's own loop with
//!    `call_soon_threadsafe`, since asyncio futures may only be touched from their loop's
//!    thread. A future cancelled meanwhile is left alone (`corral._asyncio.resolve`).
//!
//! The reply sits behind a mutex shared by steps 1 and 3, and whoever takes the answer sets
//! it to `None`, so a future is resolved exactly once.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock},
    task::{Context, Poll, Wake, Waker},
};

use corral_cores::sync;
use corral_engine::Tensor;
use corral_runtime::{InferError, Inference, Reply};
use crossbeam_channel::Sender;
use pyo3::prelude::*;

use crate::{convert::outputs_dict, errors};

struct Pending {
    /// `None` once the answer was taken.
    reply: Mutex<Option<Reply>>,
    future: Py<PyAny>,
    event_loop: Py<PyAny>,
}

struct Waken(Arc<Pending>);

impl Wake for Waken {
    fn wake(self: Arc<Self>) {
        // The receiving thread lives as long as the process; a send cannot fail.
        let _ = completions().send(self.0.clone());
    }
}

fn completions() -> &'static Sender<Arc<Pending>> {
    static SENDER: OnceLock<Sender<Arc<Pending>>> = OnceLock::new();
    SENDER.get_or_init(|| {
        let (sender, receiver) = crossbeam_channel::unbounded::<Arc<Pending>>();
        std::thread::Builder::new()
            .name("corral-asyncio".to_owned())
            .spawn(move || {
                for pending in receiver {
                    let Some(answer) = poll(&pending) else { continue };
                    Python::attach(|py| deliver(py, &pending, answer));
                }
            })
            .expect("cannot start the corral-asyncio thread");
        sender
    })
}

/// Takes the answer if it is there (and no one took it before).
fn poll(pending: &Arc<Pending>) -> Option<Result<Inference, InferError>> {
    let mut slot = sync::lock(&pending.reply);
    let reply = slot.as_mut()?;
    let waker = Waker::from(Arc::new(Waken(pending.clone())));
    match Pin::new(reply).poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(answer) => {
            *slot = None;
            Some(answer)
        }
        Poll::Pending => None,
    }
}

/// The result (a dict of arrays) or exception of `answer`.
fn outcome(py: Python<'_>, answer: Result<Inference, InferError>) -> (Py<PyAny>, Py<PyAny>) {
    let converted = answer.map_err(errors::infer).and_then(|inference| outputs_dict(py, inference));
    match converted {
        Ok(dict) => (dict.into_any().unbind(), py.None()),
        Err(error) => (py.None(), error.into_value(py).into_any()),
    }
}

/// Step 3: resolves the future on its loop's thread.
fn deliver(py: Python<'_>, pending: &Pending, answer: Result<Inference, InferError>) {
    let (result, error) = outcome(py, answer);
    let resolve = py.import("corral._asyncio").and_then(|m| m.getattr("resolve"));
    let handed = resolve.and_then(|resolve| {
        pending.event_loop.call_method1(
            py,
            "call_soon_threadsafe",
            (resolve, pending.future.clone_ref(py), result, error),
        )
    });
    // A loop closed meanwhile (RuntimeError) has no one left to tell; anything else is shown.
    if let Err(error) = handed
        && !error.is_instance_of::<pyo3::exceptions::PyRuntimeError>(py)
    {
        error.print(py);
    }
}

/// Step 1: the future of one call (`tensors` is the conversion's outcome).
pub(crate) fn submit<'py>(
    py: Python<'py>,
    model: &corral_runtime::Model,
    tensors: PyResult<Vec<Tensor>>,
) -> PyResult<Bound<'py, PyAny>> {
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    let submitted = match tensors {
        // Never waits for room: the event loop's thread must not block.
        Ok(tensors) => model.try_submit(tensors).map_err(errors::infer),
        Err(error) => Err(error),
    };
    let reply = match submitted {
        Ok(reply) => reply,
        Err(error) => {
            future.call_method1("set_exception", (error.into_value(py),))?;
            return Ok(future);
        }
    };
    let pending = Arc::new(Pending {
        reply: Mutex::new(Some(reply)),
        future: future.clone().unbind(),
        event_loop: event_loop.unbind(),
    });
    if let Some(answer) = poll(&pending) {
        let (result, error) = outcome(py, answer);
        py.import("corral._asyncio")?.getattr("resolve")?.call1((future.clone(), result, error))?;
    }
    Ok(future)
}
