//! Models calling models (Triton's BLS: `InferenceRequest(...).exec()` in a `model.py`): the
//! server attaches itself to the runtime's engines as their [`Calls`], and each call is one
//! more front end of [`call::infer`]: the target looked up by name and version, Triton's
//! checks in Triton's order, its own placement, batching, sequence and statistics, and no
//! network hop. A call runs on the server's tokio runtime, so a model's concurrent
//! `async_exec` calls run at once; a call that cannot start within `CORRAL_EXEC_TIMEOUT` (a
//! model calling itself with one instance) fails as any call does, with the runtime's timeout.
//!
//! Errors come back as the response's error (Triton's words and codes), never as a failure of
//! the calling model. Model control a model asks for (`load_model`, `unload_model`,
//! `is_model_ready`) runs here too, on the repository API's paths.

use std::sync::{Arc, Weak};

use corral_engine::{Asker, CallAnswer, CallFailure, CallRequest, Calls, Control, Tensor};

use crate::{
    call::{self, Request, Streamed, WantedOutput},
    error::{CallError, ErrorKind},
    sequence::{SequenceId, SequenceParams},
    state::ServerState,
    triton,
};

/// The server, as models' calls reach it.
pub struct Bls {
    state: Weak<ServerState>,
    handle: tokio::runtime::Handle,
}

impl Bls {
    pub fn new(state: &Arc<ServerState>, handle: tokio::runtime::Handle) -> Bls {
        Bls { state: Arc::downgrade(state), handle }
    }
}

impl Calls for Bls {
    fn call(&self, request: CallRequest, mut answer: Box<dyn FnMut(CallAnswer) + Send>) {
        let Some(state) = self.state.upgrade() else {
            let failure = CallFailure { code: "UNAVAILABLE", message: "the server is shutting down".to_owned() };
            return answer(CallAnswer { result: Err(failure), last: true });
        };
        self.handle.spawn(async move {
            let target = request.model.clone();
            let decoupled = state.model(&target, &request.version).is_ok_and(|s| s.config.decoupled);
            if !decoupled {
                let result = run(&state, request).await.map_err(|e| failure(&target, &e));
                return answer(CallAnswer { result, last: true });
            }
            if !request.decoupled {
                let message = triton::bls_not_run(&target, &triton::bls_decoupled(&target));
                return answer(CallAnswer { result: Err(CallFailure { code: "INTERNAL", message }), last: true });
            }
            stream(&state, request, answer).await;
        });
    }

    fn control(&self, asker: Asker, request: Control, answer: Box<dyn FnOnce(Result<bool, CallFailure>) + Send>) {
        let Some(state) = self.state.upgrade() else {
            let failure = CallFailure { code: "UNAVAILABLE", message: "the server is shutting down".to_owned() };
            return answer(Err(failure));
        };
        // See ServerState::model_control.
        self.handle.spawn(async move {
            let outcome = state.model_control(&asker, request).await;
            answer(outcome.map_err(|e| CallFailure { code: code_of(e.kind), message: e.message }));
        });
    }
}

/// A call of a decoupled model (`exec(decoupled=True)`): each response handed on as it comes.
async fn stream(state: &ServerState, request: CallRequest, mut answer: Box<dyn FnMut(CallAnswer) + Send>) {
    let target = request.model.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let (model, version) = (request.model.clone(), request.version.clone());
    let decode = |_: &_| Ok(decoded(request));
    let encode = |_: &_, _: Option<&str>, outputs: Vec<call::Output<'_>>| {
        Ok(outputs.into_iter().map(|o| o.tensor.into_owned()).collect::<Vec<Tensor>>())
    };
    let producer = async move { call::infer_stream(state, &model, &version, decode, encode, &tx).await };
    let consumer = async {
        while let Some(item) = rx.recv().await {
            answer(match item {
                Streamed::Response(tensors, last) => CallAnswer { result: Ok(tensors), last },
                Streamed::EmptyFinal => CallAnswer { result: Ok(Vec::new()), last: true },
                // The target's own error response keeps its code and words (python_backend's
                // InferResponseComplete); one refused before it ran is prefixed.
                Streamed::Failed(error, last) => {
                    CallAnswer { result: Err(CallFailure { code: code_of(error.kind), message: error.message }), last }
                }
                Streamed::Refused(error) => CallAnswer { result: Err(failure(&target, &error)), last: true },
            });
        }
    };
    tokio::join!(producer, consumer);
}

/// The request as the call takes it.
fn decoded(request: CallRequest) -> Request {
    let CallRequest { id, inputs, outputs, correlation_id, flags, .. } = request;
    let sequence = SequenceParams {
        id: correlation_id.map(|c| c.parse().map_or(SequenceId::Text(c), SequenceId::Number)),
        start: flags & 1 != 0,
        end: flags & 2 != 0,
    };
    Request {
        id: (!id.is_empty()).then_some(id),
        inputs,
        outputs: outputs
            .into_iter()
            .map(|name| WantedOutput { name, binary: Some(true), shm: None, class_count: 0 })
            .collect(),
        binary_output: true,
        sequence,
        ..Request::default()
    }
}

/// One call, through the one call every front end makes.
async fn run(state: &ServerState, request: CallRequest) -> Result<Vec<Tensor>, CallError> {
    let (model, version) = (request.model.clone(), request.version.clone());
    if state.model(&model, &version).is_err() {
        return Err(triton::bls_not_ready(&model));
    }
    let decode = |_: &_| Ok(decoded(request));
    let encode = |_: &_, _: Option<&str>, outputs: Vec<call::Output<'_>>| {
        Ok(outputs.into_iter().map(|o| o.tensor.into_owned()).collect())
    };
    call::infer(state, &model, &version, decode, encode).await
}

/// A call's error as python_backend answers it: one refused before it ran (the target not
/// ready, its inputs wrong) as `Model TARGET - Error when running inference: ...` with code
/// INTERNAL (request_executor.cc drops core's code there); one that failed while it ran with
/// its own message and code (`TRITONSERVER_Error_Code` names).
pub fn failure(target: &str, error: &CallError) -> CallFailure {
    if matches!(error.kind, ErrorKind::BadRequest | ErrorKind::NotFound | ErrorKind::TooLarge) {
        return CallFailure { code: "INTERNAL", message: triton::bls_not_run(target, &error.message) };
    }
    CallFailure { code: code_of(error.kind), message: error.message.clone() }
}

/// An error kind as Triton's error code name.
fn code_of(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadRequest | ErrorKind::TooLarge => "INVALID_ARG",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::Unavailable | ErrorKind::Forbidden => "UNAVAILABLE",
        ErrorKind::Internal => "INTERNAL",
        ErrorKind::Unsupported => "UNSUPPORTED",
        ErrorKind::AlreadyExists => "ALREADY_EXISTS",
    }
}
