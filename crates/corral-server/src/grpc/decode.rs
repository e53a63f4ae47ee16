//! A ModelInfer request's inputs as tensors: `raw_input_contents` (little-endian bytes, one
//! entry per input not in shared memory), typed `contents` (each value checked to fit a
//! narrower type), or a shared-memory region.

use corral_engine::{DataType, Strings, Tensor, TensorData};

use super::pb;
use crate::{
    call,
    shm::{self, ShmInput, ShmRef},
    strings::Unread,
    triton,
};

/// A ModelInfer request's inputs: those it carries, and those in shared memory.
#[derive(Debug, Default)]
pub struct DecodedInputs {
    pub tensors: Vec<Tensor>,
    pub shm: Vec<ShmInput>,
    /// A BYTES input whose elements are not its shape's (the last such input, `strings.rs`),
    /// answered after the other request checks.
    pub bytes_error: Option<crate::error::CallError>,
}

/// The `shared_memory_*` parameters of a tensor.
pub(super) fn shm_reference(
    parameters: &std::collections::HashMap<String, pb::InferParameter>,
    what: &str,
) -> Result<Option<ShmRef>, String> {
    use pb::infer_parameter::ParameterChoice;
    let get = |key: &str| parameters.get(key).and_then(|p| p.parameter_choice.as_ref());
    let region = match get("shared_memory_region") {
        None => None,
        Some(ParameterChoice::StringParam(region)) => Some(region.as_str()),
        Some(_) => return Err(format!("{what}: shared_memory_region must be a string")),
    };
    let number = |key: &str| match get(key) {
        None => Ok(None),
        Some(ParameterChoice::Int64Param(n)) if *n >= 0 => Ok(Some(*n as u64)),
        Some(ParameterChoice::Uint64Param(n)) => Ok(Some(*n)),
        Some(_) => Err(format!("{what}: {key} must be a whole number")),
    };
    let (offset, byte_size) = (number("shared_memory_offset")?, number("shared_memory_byte_size")?);
    shm::reference(region, offset, byte_size, what).map_err(|e| e.message)
}

/// The inputs of a ModelInfer request, checked against their shapes before any allocation,
/// in Triton's order and words (`infer_handler.cc`, `InferGRPCToInput`): inputs in order; a
/// shared-memory input must carry no contents; typed `contents` are refused while
/// `raw_input_contents` is given; every other input takes the next raw entry (entries left
/// over are ignored, as Triton ignores them). Raw tensors are read in place from the received
/// message where aligned for their elements, else copied once; typed contents are moved out
/// of the request (left empty), not copied.
pub fn decode_inputs(request: &mut pb::ModelInferRequest) -> Result<DecodedInputs, String> {
    let raw = &request.raw_input_contents;
    let model = &request.model_name;
    let id = Some(request.id.as_str());
    let mut decoded = DecodedInputs::default();
    // Triton: grpc/infer_handler.cc, SetInferenceRequestMetadata.
    if request.parameters.keys().any(|k| k.starts_with("triton_") && k != "triton_enable_empty_final_response") {
        return Err(triton::reserved_parameter_grpc().message);
    }
    let mut next_raw = 0;
    for input in &mut request.inputs {
        let name = &input.name;
        let datatype = call::datatype(&input.datatype).map_err(|e| format!("input `{name}`: {e}"))?;
        let shape: Vec<usize> = input
            .shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("input `{name}`: shape dimension {d} is negative")))
            .collect::<Result<_, _>>()?;
        if let Some(at) = shm_reference(&input.parameters, &format!("input '{name}'"))? {
            if input.contents.is_some() {
                return Err(triton::shm_input_has_contents(name, model));
            }
            decoded.shm.push(ShmInput { name: name.clone(), datatype, shape, at });
            continue;
        }
        let count = call::elements(&shape).ok_or_else(|| format!("input `{name}`: shape {shape:?} is too large"))?;
        let data = match &mut input.contents {
            Some(_) if !raw.is_empty() => return Err(triton::contents_with_raw(name, model)),
            // Typed strings are counted as raw ones are (Triton serializes them, then counts).
            Some(contents) if datatype == DataType::Bytes && contents.bytes_contents.len() != count => {
                let found = contents.bytes_contents.len();
                decoded.bytes_error = Some(if found > count {
                    triton::bytes_more(id, name, model, count)
                } else {
                    triton::bytes_fewer(id, name, model, count, found)
                });
                TensorData::Bytes(Strings::default())
            }
            Some(contents) => typed(contents, datatype, count, name, model, &request.id)?,
            None => {
                let bytes = raw.get(next_raw).ok_or_else(|| triton::missing_raw_input(name, model))?;
                next_raw += 1;
                if let Some(expected) = datatype.size().map(|size| count.saturating_mul(size))
                    && expected != bytes.len()
                {
                    return Err(triton::byte_size_mismatch(id, name, model, expected, bytes.len()).message);
                }
                match crate::strings::from_wire(datatype, bytes.clone(), count, id, name, model) {
                    Ok(data) => data,
                    Err(Unread::Miscounted(error)) => {
                        decoded.bytes_error = Some(error);
                        TensorData::Bytes(Strings::default())
                    }
                    Err(Unread::Wire(e)) => return Err(format!("input `{name}`: raw_input_contents has {e}")),
                }
            }
        };
        decoded.tensors.push(Tensor::new(name.clone(), shape, data));
    }
    Ok(decoded)
}

/// Typed `contents` as `datatype`: its own field must hold the shape's values (Triton's
/// words for another field, or a count that is not the shape's).
pub(super) fn typed(
    c: &mut pb::InferTensorContents,
    datatype: DataType,
    count: usize,
    name: &str,
    model: &str,
    id: &str,
) -> Result<TensorData, String> {
    let fields: [(&str, usize); 9] = [
        ("BOOL", c.bool_contents.len()),
        ("INT32", c.int_contents.len()),
        ("INT64", c.int64_contents.len()),
        ("UINT32", c.uint_contents.len()),
        ("UINT64", c.uint64_contents.len()),
        ("FP32", c.fp32_contents.len()),
        ("FP64", c.fp64_contents.len()),
        ("BYTES", c.bytes_contents.len()),
        ("", 0),
    ];
    // Which field a datatype's values go in (Triton: narrower integers share the 32-bit ones).
    let field = match datatype {
        DataType::Bool => "BOOL",
        DataType::I8 | DataType::I16 | DataType::I32 => "INT32",
        DataType::I64 => "INT64",
        DataType::U8 | DataType::U16 | DataType::U32 => "UINT32",
        DataType::U64 => "UINT64",
        DataType::F32 => "FP32",
        DataType::F64 => "FP64",
        DataType::Bytes => "BYTES",
        DataType::F16 | DataType::BF16 => {
            return Err(format!("{datatype} has no typed contents field; send it in raw_input_contents"));
        }
    };
    if let Some((other, _)) = fields.iter().find(|&&(f, len)| len > 0 && f != field) {
        return Err(triton::typed_contents_mismatch(name, model, other, datatype));
    }
    let given = fields.iter().find(|&&(f, _)| f == field).map_or(0, |&(_, len)| len);
    if given != count {
        let size = datatype.size().unwrap_or(1);
        // `count` may be any size a shape names: the product saturates rather than wraps.
        let (expected, got) = (count.saturating_mul(size), given.saturating_mul(size));
        return Err(triton::byte_size_mismatch(Some(id), name, model, expected, got).message);
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(std::mem::take(&mut c.bool_contents)),
        DataType::U8 => TensorData::U8(narrow(&c.uint_contents, datatype)?),
        DataType::U16 => TensorData::U16(narrow(&c.uint_contents, datatype)?),
        DataType::U32 => TensorData::U32(std::mem::take(&mut c.uint_contents)),
        DataType::U64 => TensorData::U64(std::mem::take(&mut c.uint64_contents)),
        DataType::I8 => TensorData::I8(narrow(&c.int_contents, datatype)?),
        DataType::I16 => TensorData::I16(narrow(&c.int_contents, datatype)?),
        DataType::I32 => TensorData::I32(std::mem::take(&mut c.int_contents)),
        DataType::I64 => TensorData::I64(std::mem::take(&mut c.int64_contents)),
        DataType::F32 => TensorData::F32(std::mem::take(&mut c.fp32_contents)),
        DataType::F64 => TensorData::F64(std::mem::take(&mut c.fp64_contents)),
        DataType::Bytes => TensorData::Bytes(Strings::from_elements(&c.bytes_contents)),
        DataType::F16 | DataType::BF16 => unreachable!("refused above"),
    })
}

/// `uint_contents` or `int_contents` as a narrower type, each value checked to fit.
pub(super) fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
    values: &[S],
    datatype: DataType,
) -> Result<Vec<T>, String> {
    values.iter().map(|&x| T::try_from(x).map_err(|_| format!("{x} is not a {datatype} value"))).collect()
}
