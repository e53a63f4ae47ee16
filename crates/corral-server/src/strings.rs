//! A BYTES input's elements counted as Triton counts them (core infer_request.cc,
//! `ValidateBytesInputs`, the last of its request checks), for every way a request carries
//! them (binary REST bodies, gRPC raw and typed contents, JSON strings, shared memory).
//! Triton answers the last input that fails it (its inputs are an unordered map, which
//! libstdc++ walks newest first): decoders keep the last such error and the call answers it
//! after the other request checks, as Triton checks this one last.

use bytes::Bytes;
use corral_engine::{DataType, TensorData, WireError};

use crate::{error::CallError, triton};

/// Why an input's wire bytes did not read ([`from_wire`]).
pub enum Unread {
    /// A BYTES input whose elements are not its shape's, in Triton's words: the call answers
    /// it after its other checks.
    Miscounted(CallError),
    /// Bytes that are not the tensor's otherwise (a size, an element cut short): the front
    /// end words it.
    Wire(WireError),
}

/// `count` elements of `datatype` from `bytes` (`TensorData::from_wire_shared`). Only a
/// BYTES input that does not read is counted as Triton counts it ([`bytes_elements`]), so a
/// good one is walked once; an input Triton's count passes keeps the reader's error.
pub fn from_wire(
    datatype: DataType,
    bytes: Bytes,
    count: usize,
    id: Option<&str>,
    input: &str,
    model: &str,
) -> Result<TensorData, Unread> {
    TensorData::from_wire_shared(datatype, bytes.clone(), count).map_err(|wire| {
        match (datatype == DataType::Bytes).then(|| bytes_elements(&bytes, count, id, input, model)) {
            Some(Err(miscounted)) => Unread::Miscounted(miscounted),
            _ => Unread::Wire(wire),
        }
    })
}

/// A BYTES input's wire bytes counted as Triton counts them (core infer_request.cc,
/// `ValidateBytesInputs`, the last of its request checks): elements of a 4-byte length and
/// that many bytes, `count` of them. Triton stops at the first element past the count and
/// takes a last element cut short as whole (the model then refuses it; corral's wire reader
/// does).
fn bytes_elements(bytes: &[u8], count: usize, id: Option<&str>, input: &str, model: &str) -> Result<(), CallError> {
    let (mut rest, mut checked) = (bytes, 0usize);
    while !rest.is_empty() {
        let Some((length, after)) = rest.split_first_chunk::<4>() else {
            return Err(triton::bytes_indicator(id, input, model, rest.len()));
        };
        checked += 1;
        if checked > count {
            return Err(triton::bytes_more(id, input, model, count));
        }
        let length = u32::from_le_bytes(*length) as usize;
        rest = &after[length.min(after.len())..];
    }
    if checked != count {
        return Err(triton::bytes_fewer(id, input, model, count, checked));
    }
    Ok(())
}
