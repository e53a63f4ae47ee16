//! The REST inference body, both ways (into the protocol-neutral `call::Request`, out of its
//! `call::Output`s): KServe v2 JSON tensors (flat or nested `data`) and
//! Triton's binary tensor extension, where the body is a JSON header of
//! `Inference-Header-Content-Length` bytes followed by each binary input's bytes in input
//! order (`parameters.binary_data_size`), and outputs come back the same way when asked
//! (`binary_data` per output, or `binary_data_output` for all).
//!
//! Decoding checks every size against the shape before allocating anything (JSON `data`'s
//! elements only once its text could hold them), so a hostile body costs at most its own
//! length; every mistake is a [`CallError`] with a message for
//! the client, never a panic. Where Triton checks the same thing, the words and the status
//! are Triton's (`triton.rs`; `http_server.cc`: `EVBufferToInput`, `ValidateInputContentType`,
//! `ReadDataFromJson`); its JSON errors are 500s.

use bytes::Bytes;
use corral_engine::{DataType, Strings, Tensor, TensorData, TensorView};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value, value::RawValue};

use crate::{
    call::{Output, OutputForm, Request, WantedOutput, datatype, elements},
    error::CallError,
    json_data::DataError,
    sequence::{SequenceId, SequenceParams},
    shm::{ShmInput, ShmRef},
    strings::Unread,
    triton,
};

/// A decoding mistake of the client's.
type CodecError = CallError;

fn bad<T>(message: impl Into<String>) -> Result<T, CodecError> {
    Err(CallError::bad_request(message))
}

pub use crate::json_data::JSON_NESTING_MAX;

/// Decodes a request body for `model`; `header_len` is `Inference-Header-Content-Length`
/// when present, `limit` the largest byte size a JSON input's elements may take (Triton's
/// `--http-max-input-size`). Binary inputs are read in place from `body` where their bytes are
/// aligned for their elements (`body::collect` places them so), else copied once.
pub fn decode(body: &Bytes, header_len: Option<usize>, model: &str, limit: usize) -> Result<Request, CodecError> {
    match header_len {
        Some(n) if n > body.len() => {
            bad(format!("Inference-Header-Content-Length is {n} but the body has only {} bytes", body.len()))
        }
        Some(n) => decode_parts(&body[..n], &body.slice(n..), model, limit),
        None => decode_parts(body, &Bytes::new(), model, limit),
    }
}

/// [`decode`] of a body read in two parts: its JSON `header` and the binary `tensors` after
/// it (where a batching model's body was read into its batch's buffer: `slab.rs`).
pub fn decode_parts(header: &[u8], tensors: &Bytes, model: &str, limit: usize) -> Result<Request, CodecError> {
    let mut binary = &tensors[..];
    let (header, raw_data) = read_header(header)?;
    let id = match header.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return bad("`id` must be a string"),
    };
    let request_parameters = parameters(&header, "the request")?;
    let binary_output = flag(request_parameters, "binary_data_output")?.unwrap_or(false);
    let sequence_id = request_parameters.and_then(|p| p.get("sequence_id")).map(|id| match id {
        Value::String(text) => Ok(SequenceId::Text(text.clone())),
        other => other
            .as_u64()
            .map(SequenceId::Number)
            .ok_or_else(|| "sequence_id must be a whole number or a string".to_owned()),
    });
    let sequence = SequenceParams::read(
        sequence_id,
        flag(request_parameters, "sequence_start")?,
        flag(request_parameters, "sequence_end")?,
    )
    .map_err(CallError::bad_request)?;
    let Some(Value::Array(inputs_json)) = header.get("inputs") else {
        return bad("the request needs an `inputs` array");
    };
    if let Some(parameters) = request_parameters
        && parameters.keys().any(|k| k.starts_with("triton_"))
    {
        return Err(triton::reserved_parameter_http());
    }
    let mut inputs = Vec::with_capacity(inputs_json.len());
    let mut shm_inputs = Vec::new();
    let mut bytes_error = None;
    for (i, (input, raw_data)) in inputs_json.iter().zip(raw_data).enumerate() {
        let Value::Object(input) = input else { return bad(format!("inputs[{i}] must be an object")) };
        let name = match input.get("name") {
            Some(Value::String(name)) => name.clone(),
            _ => return bad(format!("inputs[{i}] needs a string `name`")),
        };
        let datatype = match input.get("datatype") {
            Some(Value::String(d)) => {
                datatype(d).map_err(|e| CallError::bad_request(format!("input `{name}`: {e}")))?
            }
            _ => return bad(format!("input `{name}` needs a string `datatype`")),
        };
        let shape = shape(input.get("shape"))?;
        let count = elements(&shape).ok_or_else(|| triton::element_count_overflow(&name, &shape))?;
        let input_parameters = parameters(input, &format!("input `{name}`"))?;
        // Triton's rule (ValidateInputContentType): exactly one source of data.
        let sources: Vec<&str> = [
            (input.contains_key("data"), "'data'"),
            (input_parameters.is_some_and(|p| p.contains_key("binary_data_size")), "'binary_data_size'"),
            (input_parameters.is_some_and(|p| p.contains_key("shared_memory_region")), "'shared_memory_region'"),
        ]
        .into_iter()
        .filter_map(|(set, field)| set.then_some(field))
        .collect();
        if sources.len() != 1 {
            return Err(triton::one_data_source(&sources));
        }
        if let Some(at) = shm_parameters(input_parameters, &format!("input '{name}'"))? {
            shm_inputs.push(ShmInput { name, datatype, shape, at });
            continue;
        }
        let binary_size = input_parameters
            .and_then(|p| p.get("binary_data_size"))
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| triton::unable_to_parse("binary_data_size", triton::json_type("unsigned-integer")))
            })
            .transpose()?;
        let data = match (binary_size, input.get("data")) {
            (Some(size), _) => {
                let expected = datatype.size().map(|element| count.checked_mul(element));
                if let Some(expected) = expected.filter(|&expected| expected != Some(size as usize)) {
                    let expected = expected.unwrap_or(usize::MAX);
                    return Err(triton::byte_size_mismatch(id.as_deref(), &name, model, expected, size as usize));
                }
                if binary.len() < size as usize {
                    return Err(triton::missing_binary_bytes(&name, model, size as usize - binary.len()));
                }
                let at = tensors.len() - binary.len();
                binary = &binary[size as usize..];
                let mine = tensors.slice(at..at + size as usize);
                match crate::strings::from_wire(datatype, mine, count, id.as_deref(), &name, model) {
                    Ok(data) => data,
                    Err(Unread::Miscounted(error)) => {
                        bytes_error = Some(error);
                        TensorData::Bytes(Strings::default())
                    }
                    Err(Unread::Wire(e)) => return Err(CallError::bad_request(format!("input '{name}': {e}"))),
                }
            }
            (None, Some(_)) => {
                // Triton: http_server.cc, ParseJsonTritonIO: the elements' byte size, checked
                // for overflow and against the limit before the data is read.
                if let Some(size) = datatype.size() {
                    if size > 1 && count > i64::MAX as usize / size {
                        return Err(triton::byte_size_overflow(&name, count as u64, size));
                    }
                    if count * size > limit {
                        return Err(triton::json_input_too_large(&name, (count * size) as u128, limit));
                    }
                }
                let text = raw_data.expect("an input's data is kept as text");
                // Triton sizes a JSON BYTES input by its strings, then counts them as any BYTES
                // input (core infer_request.cc, ValidateBytesInputs), last.
                let read = crate::json_data::read(text, datatype, count);
                let miscounted = match &read {
                    Err(DataError::TooMany) if datatype == DataType::Bytes => {
                        Some(triton::bytes_more(id.as_deref(), &name, model, count))
                    }
                    Err(DataError::TooFew { found }) if datatype == DataType::Bytes => {
                        Some(triton::bytes_fewer(id.as_deref(), &name, model, count, *found))
                    }
                    _ => None,
                };
                if let Some(error) = miscounted {
                    bytes_error = Some(error);
                    inputs.push(Tensor::new(name, shape, TensorData::Bytes(Strings::default())));
                    continue;
                }
                json_data(read, datatype, &name)?
            }
            (None, None) => unreachable!("exactly one source of data was checked above"),
        };
        inputs.push(Tensor::new(name, shape, data));
    }
    if !binary.is_empty() {
        return Err(triton::surplus_binary(model));
    }
    let outputs = match header.get("outputs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(outputs)) => outputs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let Value::Object(o) = o else { return bad(format!("outputs[{i}] must be an object")) };
                let Some(Value::String(name)) = o.get("name") else {
                    return bad(format!("outputs[{i}] needs a string `name`"));
                };
                let output_parameters = parameters(o, &format!("output `{name}`"))?;
                let binary = flag(output_parameters, "binary_data")?;
                let shm = shm_parameters(output_parameters, &format!("output '{name}'"))?;
                let has = |key: &str| output_parameters.is_some_and(|p| p.contains_key(key));
                if shm.is_some() && has("classification") {
                    return Err(triton::output_shm_and("classification"));
                }
                // tritonclient sends `binary_data: false` beside a region; only true conflicts.
                if shm.is_some() && binary == Some(true) {
                    return Err(triton::output_shm_and("binary_data"));
                }
                let class_count = match output_parameters.and_then(|p| p.get("classification")) {
                    None => 0,
                    Some(k) => k.as_u64().and_then(|k| usize::try_from(k).ok()).ok_or_else(|| {
                        CallError::bad_request(format!(
                            "output `{name}`: classification must be a whole number 0 or more"
                        ))
                    })?,
                };
                Ok(WantedOutput { name: name.clone(), binary, shm, class_count })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return bad("`outputs` must be an array"),
    };
    Ok(Request { id, inputs, shm_inputs, outputs, binary_output, sequence, bytes_error })
}

/// `shared_memory_region`, `_offset` and `_byte_size` of a tensor's parameters.
fn shm_parameters(parameters: Option<&Map<String, Value>>, what: &str) -> Result<Option<ShmRef>, CodecError> {
    let Some(parameters) = parameters else { return Ok(None) };
    let region = match parameters.get("shared_memory_region") {
        None => None,
        Some(Value::String(region)) => Some(region.as_str()),
        Some(_) => return bad(format!("{what}: shared_memory_region must be a string")),
    };
    let number = |key: &str| match parameters.get(key) {
        None => Ok(None),
        Some(v) => {
            v.as_u64().map(Some).ok_or_else(|| CallError::bad_request(format!("{what}: {key} must be a whole number")))
        }
    };
    let (offset, byte_size) = (number("shared_memory_offset")?, number("shared_memory_byte_size")?);
    crate::shm::reference(region, offset, byte_size, what)
}

fn parameters<'a>(object: &'a Map<String, Value>, what: &str) -> Result<Option<&'a Map<String, Value>>, CodecError> {
    match object.get("parameters") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(p)) => Ok(Some(p)),
        Some(_) => bad(format!("{what}: `parameters` must be an object")),
    }
}

fn flag(parameters: Option<&Map<String, Value>>, name: &str) -> Result<Option<bool>, CodecError> {
    match parameters.and_then(|p| p.get(name)) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => bad(format!("parameter {name} must be true or false")),
    }
}

/// An input's `shape`, with Triton's words for one that is not an array of whole numbers.
fn shape(value: Option<&Value>) -> Result<Vec<usize>, CallError> {
    let Some(value) = value else { return Err(triton::missing_member("shape")) };
    let Value::Array(dims) = value else {
        return Err(triton::unable_to_parse("shape", triton::json_type("array")));
    };
    dims.iter()
        .map(|d| {
            d.as_u64()
                .map(|d| d as usize)
                .ok_or_else(|| triton::unable_to_parse("shape", triton::json_type("unsigned-integer")))
        })
        .collect()
}

/// An input's `data` read straight into its elements (`json_data.rs`), with Triton's words
/// for each mistake (its JSON errors are 500s).
fn json_data(read: Result<TensorData, DataError>, datatype: DataType, name: &str) -> Result<TensorData, CallError> {
    match read {
        Ok(elements) => Ok(elements),
        Err(DataError::TooDeep) => {
            // BYTES are checked unwrapped, as Triton's are.
            let too_deep = triton::nesting_too_deep(JSON_NESTING_MAX);
            Err(if datatype == DataType::Bytes { too_deep } else { triton::unable_to_parse("data", too_deep) })
        }
        Err(DataError::TooMany) => Err(triton::data_too_many()),
        Err(DataError::TooFew { .. }) => Err(triton::data_too_few()),
        Err(DataError::Value(wrong)) => bad(format!("input `{name}`: {wrong}")),
        Err(DataError::Syntax(error)) => Err(triton::unable_to_parse("data", triton::json_error(error))),
    }
}

/// A request's JSON header as values, except each input's `data`: input i's is the text at
/// `data[i]` (a `null` stands in its place in the values).
type RequestHeader<'a> = (Map<String, Value>, Vec<Option<&'a RawValue>>);

/// The request's JSON header as values, except each input's `data`, which is kept as its
/// text to be read straight into the tensor once the input's datatype and shape are known.
fn read_header<'a>(text: &'a [u8]) -> Result<RequestHeader<'a>, CodecError> {
    let syntax = |e: serde_json::Error| triton::unparsable_json(&e);
    let top: std::collections::BTreeMap<String, &'a RawValue> = match serde_json::from_slice(text) {
        Ok(top) => top,
        Err(e) if e.classify() == serde_json::error::Category::Data => return Err(triton::json_type("object")),
        Err(e) => return Err(syntax(e)),
    };
    let parse = |raw: &RawValue| serde_json::from_str::<Value>(raw.get()).map_err(syntax);
    // One input: its fields as values but `data`, which is kept as text.
    let input = |raw: &'a RawValue| -> Result<(Value, Option<&'a RawValue>), CallError> {
        let Ok(fields) = serde_json::from_str::<std::collections::BTreeMap<String, &RawValue>>(raw.get()) else {
            return Ok((parse(raw)?, None));
        };
        let mut object = Map::new();
        let mut data = None;
        for (field, raw) in fields {
            let value = if field == "data" {
                data = Some(raw);
                Value::Null
            } else {
                parse(raw)?
            };
            object.insert(field, value);
        }
        Ok((Value::Object(object), data))
    };
    let mut header = Map::new();
    let mut data = Vec::new();
    for (key, raw) in top {
        let inputs = if key == "inputs" { serde_json::from_str::<Vec<&RawValue>>(raw.get()).ok() } else { None };
        let value = match inputs {
            Some(inputs) => {
                let (values, texts): (Vec<Value>, Vec<_>) =
                    inputs.into_iter().map(input).collect::<Result<Vec<_>, _>>()?.into_iter().unzip();
                data = texts;
                Value::Array(values)
            }
            None => parse(raw)?,
        };
        header.insert(key, value);
    }
    Ok((header, data))
}

/// An encoded response: the body's parts (the JSON header, then each binary output's bytes,
/// shared with the tensor where they already are in wire form) and, when binary outputs
/// follow the JSON, the header's length.
pub struct Encoded {
    pub parts: Vec<Bytes>,
    pub header_len: Option<usize>,
}

/// The answer's JSON header, keys in the order Triton's clients have always seen from
/// corral (alphabetical).
#[derive(Serialize)]
struct AnswerHeader<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    model_name: &'a str,
    model_version: &'a str,
    outputs: Vec<OutputHeader<'a>>,
}

#[derive(Serialize)]
struct OutputHeader<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
    datatype: &'static str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    shape: &'a [usize],
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// A tensor's elements as a JSON array, written straight from the elements.
struct JsonData<'a>(TensorView<'a>);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            TensorView::Bool(v) => v.serialize(serializer),
            TensorView::U8(v) => v.serialize(serializer),
            TensorView::U16(v) => v.serialize(serializer),
            TensorView::U32(v) => v.serialize(serializer),
            TensorView::U64(v) => v.serialize(serializer),
            TensorView::I8(v) => v.serialize(serializer),
            TensorView::I16(v) => v.serialize(serializer),
            TensorView::I32(v) => v.serialize(serializer),
            TensorView::I64(v) => v.serialize(serializer),
            // As Triton writes them (http_server.cc, WriteDataToJson: AppendDouble of each
            // float): the FP32 value widened to a double, in the double's shortest digits.
            TensorView::F32(v) => serializer.collect_seq(v.iter().map(|&x| f64::from(x))),
            TensorView::F64(v) => v.serialize(serializer),
            TensorView::F16(v) => serializer.collect_seq(v.iter().map(|x| x.to_f64())),
            TensorView::BF16(v) => serializer.collect_seq(v.iter().map(|x| x.to_f64())),
            // JSON carries text: bytes that are not UTF-8 come back with U+FFFD in their place
            // (ask for the output in binary to get them exactly).
            TensorView::Bytes(v) => serializer.collect_seq(v.iter().map(|e| String::from_utf8_lossy(e))),
        }
    }
}

/// The most bytes one element takes as JSON text, with its comma (a BYTES element: its
/// bytes, each escaped at worst as `\u00XX`, and its quotes).
fn json_width(data: &TensorData) -> usize {
    match data.view() {
        TensorView::Bytes(v) => v.iter().map(|e| 6 * e.len() + 3).sum(),
        view => {
            let width = match view.datatype() {
                DataType::Bool => 6,
                DataType::U8 | DataType::I8 => 5,
                DataType::U16 | DataType::I16 => 7,
                DataType::U32 | DataType::I32 => 12,
                DataType::U64 | DataType::I64 => 21,
                DataType::F16 | DataType::BF16 | DataType::F32 | DataType::F64 | DataType::Bytes => 25,
            };
            width * view.len()
        }
    }
}

/// Encodes outputs (already filtered to what was asked) with their binary choice: the JSON
/// header written once into a buffer sized for it, binary outputs after it as their own parts.
pub fn encode(model: &str, version: &str, id: Option<&str>, outputs: &[Output]) -> Encoded {
    let mut size = 128 + model.len() + version.len() + id.map_or(0, str::len);
    let mut binary = Vec::new();
    let list: Vec<OutputHeader> = outputs
        .iter()
        .map(|Output { tensor, form }| {
            let mut out = OutputHeader {
                data: None,
                datatype: tensor.datatype().kserve_name(),
                name: &tensor.name,
                parameters: None,
                shape: &tensor.shape,
            };
            size += 96 + tensor.name.len() + 21 * tensor.shape.len();
            match form {
                // As Triton answers: neither data nor parameters (its C++ client reads any
                // output `parameters` as binary data sizes).
                OutputForm::Shm(..) => {}
                OutputForm::Binary => {
                    let bytes = crate::body::tensor_bytes(&tensor.data);
                    out.parameters = Some(BinarySize { binary_data_size: bytes.len() });
                    binary.push(bytes);
                }
                OutputForm::Json => {
                    size += json_width(&tensor.data);
                    out.data = Some(JsonData(tensor.data.view()));
                }
            }
            out
        })
        .collect();
    let mut header = Vec::with_capacity(size);
    serde_json::to_writer(&mut header, &AnswerHeader { id, model_name: model, model_version: version, outputs: list })
        .expect("tensors serialize");
    let header_len = (!binary.is_empty()).then_some(header.len());
    let mut parts = Vec::with_capacity(1 + binary.len());
    parts.push(Bytes::from(header));
    parts.extend(binary);
    Encoded { parts, header_len }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn decode(body: &[u8], header_len: Option<usize>, model: &str) -> Result<Request, CodecError> {
        super::decode(&Bytes::copy_from_slice(body), header_len, model, usize::MAX)
    }

    #[test]
    fn nested_and_flat_json_data_read_alike() {
        let flat = br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}"#;
        let nested = br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}]}"#;
        assert_eq!(decode(flat, None, "m"), decode(nested, None, "m"));
        let request = decode(flat, None, "m").expect("decodes");
        assert_eq!(request.inputs[0].data, TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn binary_inputs_follow_the_header_in_order() {
        let header = br#"{"inputs":[{"name":"a","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}},{"name":"b","shape":[1],"datatype":"BOOL","data":[true]}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&7i32.to_le_bytes());
        body.extend_from_slice(&(-1i32).to_le_bytes());
        let request = decode(&body, Some(header.len()), "m").expect("decodes");
        assert_eq!(request.inputs[0].data, TensorData::I32(vec![7, -1]));
        assert_eq!(request.inputs[1].data, TensorData::Bool(vec![true]));
        assert_eq!(
            request.outputs,
            vec![WantedOutput { name: "y".into(), binary: Some(true), shm: None, class_count: 0 }]
        );
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong_in_tritons_words() {
        let nested = |depth: usize| {
            format!(
                r#"{{"inputs":[{{"name":"x","shape":[1],"datatype":"FP32","data":{}1{}}}]}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        let (deep, almost) = (nested(100), nested(99));
        assert!(decode(almost.as_bytes(), None, "m").is_ok(), "99 nested arrays are allowed");
        let cases: [(&[u8], Option<usize>, ErrorKind, &str); 12] = [
            (b"{", None, ErrorKind::Internal, "failed to parse the request JSON buffer: EOF while parsing an object at line 1 column 1 at 0"),
            (
                br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
                None,
                ErrorKind::Internal,
                "Failed to parse 'data' field: shape does not match true shape",
            ),
            (
                br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1,2]}]}"#,
                None,
                ErrorKind::Internal,
                "Unable to parse 'data': Shape does not match true shape of 'data' field",
            ),
            (
                br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FLOAT","data":[1]}]}"#,
                None,
                ErrorKind::BadRequest,
                "input `x`: unknown datatype `FLOAT`; use one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64, BYTES",
            ),
            (
                br#"{"inputs":[{"name":"x","shape":[1],"datatype":"UINT8","data":[300]}]}"#,
                None,
                ErrorKind::BadRequest,
                "input `x`: data[0] = 300 is not a UINT8 value",
            ),
            (
                br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#,
                Some(91),
                ErrorKind::BadRequest,
                "unexpected size for input 'x', expecting 8 additional bytes for model 'm'",
            ),
            (
                br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#,
                Some(91),
                ErrorKind::BadRequest,
                "[request id: <id_unknown>] input byte size mismatch for input 'x' for model 'm'. Expected 8, got 4",
            ),
            (
                br#"{"inputs":[{"name":"s","shape":[2],"datatype":"BYTES","data":["a",7]}]}"#,
                None,
                ErrorKind::BadRequest,
                "input `s`: data[1] = 7 is not a string (BYTES elements are JSON strings)",
            ),
            (
                b"{\"inputs\":[{\"name\":\"s\",\"shape\":[1],\"datatype\":\"BYTES\",\"parameters\":{\"binary_data_size\":6}}]}\x05\0\0\0ab",
                Some(92),
                ErrorKind::BadRequest,
                "input 's': the BYTES elements are not whole: each is a 4-byte little-endian length and then that many bytes, and element 0 runs past the end",
            ),
            (
                br#"{"inputs":[{"name":"x","shape":[4294967296,4294967296,4294967296],"datatype":"FP32","data":[]}]}"#,
                None,
                ErrorKind::BadRequest,
                "invalid shape for input 'x': shape [4294967296,4294967296,4294967296] causes total element count to exceed maximum size of 9223372036854775807",
            ),
            (
                br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1],"parameters":{"binary_data_size":4}}]}"#,
                None,
                ErrorKind::BadRequest,
                "Input must set only one of the following fields: 'data', 'binary_data_size' in 'parameters', 'shared_memory_region' in 'parameters'. But set 'data' 'binary_data_size'",
            ),
            (
                br#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}"#,
                None,
                ErrorKind::Internal,
                "Unable to parse 'shape': attempt to access JSON non-unsigned-integer as unsigned-integer",
            ),
        ];
        for (body, header_len, kind, message) in cases {
            let error = decode(body, header_len, "m").unwrap_err();
            assert_eq!((error.kind, error.message.as_str()), (kind, message), "{}", String::from_utf8_lossy(body));
        }
        let too_deep = decode(deep.as_bytes(), None, "m").unwrap_err();
        assert_eq!(too_deep.message, "Unable to parse 'data': JSON nesting depth exceeds maximum allowed limit (100)");
        assert_eq!(too_deep.kind, ErrorKind::BadRequest);
        let surplus = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#;
        let mut body = surplus.to_vec();
        body.extend_from_slice(&[0; 6]);
        assert_eq!(
            decode(&body, Some(surplus.len()), "m").unwrap_err().message,
            "unexpected additional input data for model 'm'"
        );
    }

    #[test]
    fn outputs_encode_as_json_or_binary() {
        let y = Tensor::new("y", vec![3], TensorData::F32(vec![0.5, 1.0, 0.1]));
        let output = |form| Output { tensor: std::borrow::Cow::Borrowed(&y), form };
        let json_only = encode("m", "1", Some("7"), &[output(OutputForm::Json)]);
        assert_eq!(json_only.header_len, None);
        assert_eq!(
            String::from_utf8(json_only.parts.concat()).expect("utf-8"),
            r#"{"id":"7","model_name":"m","model_version":"1","outputs":[{"data":[0.5,1.0,0.10000000149011612],"datatype":"FP32","name":"y","shape":[3]}]}"#
        );
        let binary = encode("m", "1", None, &[output(OutputForm::Binary)]);
        let n = binary.header_len.expect("binary");
        assert_eq!(&binary.parts.concat()[n..], &[0, 0, 0, 63, 0, 0, 128, 63, 205, 204, 204, 61]);
    }
}
