//! The error of one call (or control request), independent of the protocol: each protocol
//! maps its [`ErrorKind`] to its own codes (REST statuses, gRPC codes). Triton's words and
//! statuses, and the runtime's errors as calls', are `triton.rs`.

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
    /// Triton's ALREADY_EXISTS: HTTP 400, gRPC ALREADY_EXISTS.
    AlreadyExists,
    /// A restricted API called without its header: HTTP 403 (gRPC answers UNAVAILABLE).
    Forbidden,
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
