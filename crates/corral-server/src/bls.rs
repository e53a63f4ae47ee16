//! Models calling models (Triton's BLS: `InferenceRequest(...).exec()` in a `model.py`): the
//! server attaches itself to the runtime's engines as their [`Calls`], and each call is one
//! more front end of [`call::infer`]: the target looked up by name and version, Triton's
//! checks in Triton's order, its own placement, batching, sequence and statistics, and no
//! network hop. A call runs on the server's tokio runtime, so a model's concurrent
//! `async_exec` calls run at once; a call that cannot start within `CORRAL_EXEC_TIMEOUT` (a
//! model calling itself with one instance) fails as any call does, with the runtime's timeout.
//!
//! Errors come back as the response's error (Triton's words and codes), never as a failure of
//! the calling model.

use std::sync::{Arc, Weak};

use corral_engine::{CallAnswer, CallFailure, CallRequest, Calls, Tensor};

use crate::{
    call::{self, Request, WantedOutput},
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
            let result = run(&state, request).await.map_err(|e| failure(&target, &e));
            answer(CallAnswer { result, last: true });
        });
    }
}

/// One call, through the one call every front end makes.
async fn run(state: &ServerState, request: CallRequest) -> Result<Vec<Tensor>, CallError> {
    let CallRequest { model, version, id, inputs, outputs, correlation_id, flags } = request;
    if state.model(&model, &version).is_err() {
        return Err(triton::bls_not_ready(&model));
    }
    let sequence = SequenceParams {
        id: correlation_id.map(|c| c.parse().map_or(SequenceId::Text(c), SequenceId::Number)),
        start: flags & 1 != 0,
        end: flags & 2 != 0,
    };
    let decode = |_: &_| {
        Ok(Request {
            id: (!id.is_empty()).then_some(id),
            inputs,
            outputs: outputs
                .into_iter()
                .map(|name| WantedOutput { name, binary: Some(true), shm: None, class_count: 0 })
                .collect(),
            binary_output: true,
            sequence,
            ..Request::default()
        })
    };
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
    let code = match error.kind {
        ErrorKind::BadRequest | ErrorKind::TooLarge => "INVALID_ARG",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::Unavailable | ErrorKind::Forbidden => "UNAVAILABLE",
        ErrorKind::Internal => "INTERNAL",
        ErrorKind::Unsupported => "UNSUPPORTED",
        ErrorKind::AlreadyExists => "ALREADY_EXISTS",
    };
    CallFailure { code, message: error.message.clone() }
}
