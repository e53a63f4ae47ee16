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
