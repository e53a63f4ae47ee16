//! A call's error as a gRPC status: each protocol-neutral [`ErrorKind`] as the code Triton
//! answers it with (grpc_utils.cc, `GrpcStatusUtil::CodeToStatus`; a restricted call is
//! UNAVAILABLE, as Triton's gRPC answers it).

use tonic::Status;

use crate::error::{CallError, ErrorKind};

pub(super) fn status(error: CallError) -> Status {
    match error.kind {
        ErrorKind::BadRequest => Status::invalid_argument(error.message),
        ErrorKind::NotFound => Status::not_found(error.message),
        ErrorKind::TooLarge => Status::resource_exhausted(error.message),
        ErrorKind::Unavailable => Status::unavailable(error.message),
        ErrorKind::Internal => Status::internal(error.message),
        ErrorKind::Unsupported => Status::unimplemented(error.message),
        ErrorKind::AlreadyExists => Status::already_exists(error.message),
        ErrorKind::Forbidden => Status::unavailable(error.message),
    }
}
