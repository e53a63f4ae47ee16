//! The error of one call (or control request), independent of the protocol: each protocol
//! maps its [`ErrorKind`] to its own codes (REST statuses, gRPC codes).

use corral_runtime::InferError;

/// Which protocol-independent failure a call met; each protocol maps it to its own codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    NotFound,
    TooLarge,
    Unavailable,
    Internal,
    /// What corral (like Triton in its configuration) does not do: HTTP 501, UNIMPLEMENTED.
    Unsupported,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub kind: ErrorKind,
    pub message: String,
}

impl CallError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> CallError {
        CallError { kind, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> CallError {
        CallError::new(ErrorKind::BadRequest, message)
    }
}

impl From<InferError> for CallError {
    fn from(error: InferError) -> CallError {
        let kind = match &error {
            InferError::Input { .. } => ErrorKind::BadRequest,
            InferError::Unloaded { model } => {
                // Triton's words, as for any call to a model that is not there.
                let message = format!("Request for unknown model: '{model}' has no available versions (unloaded)");
                return CallError::new(ErrorKind::NotFound, message);
            }
            InferError::Timeout { .. } | InferError::QueueFull { .. } => ErrorKind::Unavailable,
            InferError::Engine { .. } | InferError::Internal(_) => ErrorKind::Internal,
        };
        CallError::new(kind, error.to_string())
    }
}

/// Triton's `[request id: <id>] ` prefix of its request checks' errors (`<id_unknown>`
/// without an id: `infer_request.h`, `LogRequest`).
pub fn request_prefix(id: Option<&str>) -> String {
    match id.filter(|id| !id.is_empty()) {
        Some(id) => format!("[request id: {id}] "),
        None => "[request id: <id_unknown>] ".to_owned(),
    }
}

/// Triton's error for an input whose bytes do not fill its shape.
pub fn byte_size_mismatch(id: Option<&str>, input: &str, model: &str, expected: usize, got: usize) -> CallError {
    CallError::bad_request(format!(
        "{}input byte size mismatch for input '{input}' for model '{model}'. Expected {expected}, got {got}",
        request_prefix(id)
    ))
}
