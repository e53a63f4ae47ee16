//! The KServe v2 gRPC service (`inference.GRPCInferenceService`) on tonic, with Triton's
//! model config, statistics, repository (with load overrides), system shared memory and
//! streaming calls, and sequences. Errors are gRPC statuses with a message:
//! INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED (too large), UNAVAILABLE, INTERNAL, and
//! UNIMPLEMENTED for trace and log settings.
//!
//! Inputs come as `raw_input_contents` (little-endian bytes, one entry per input not in shared
//! memory, what tritonclient sends), typed `contents`, or a shared-memory region; outputs go
//! back as `raw_output_contents`, as Triton's do (an empty entry for an output written into
//! shared memory, so entries stay at their outputs' positions).

use std::sync::Arc;

use corral_engine::{DataType, Tensor, TensorData};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    codec,
    counters::Tally,
    error::{CallError, ErrorKind},
    metadata,
    sequence::{SequenceId, SequenceParams},
    shm::{self, ShmInput, ShmRef},
    state::ServerState,
};

#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    //! Messages and service generated from `proto/inference.proto`.
    tonic::include_proto!("inference");
}

use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};

/// The service over `state`, refusing messages over `limit` bytes (inflated).
pub fn service(state: Arc<ServerState>, limit: usize) -> GrpcInferenceServiceServer<Grpc> {
    // gzip both ways (a client's `compression_algorithm="gzip"`); a unary answer is compressed
    // only when its request was (see `model_infer`), a stream's whenever the client accepts
    // gzip. The limit applies to the inflated message.
    GrpcInferenceServiceServer::new(Grpc { state })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
}

pub struct Grpc {
    state: Arc<ServerState>,
}

fn status(error: CallError) -> Status {
    match error.kind {
        ErrorKind::BadRequest => Status::invalid_argument(error.message),
        ErrorKind::NotFound => Status::not_found(error.message),
        ErrorKind::TooLarge => Status::resource_exhausted(error.message),
        ErrorKind::Unavailable => Status::unavailable(error.message),
        ErrorKind::Internal => Status::internal(error.message),
        ErrorKind::Unsupported => Status::unimplemented(error.message),
    }
}

/// A ModelInfer request's inputs: those it carries, and those in shared memory.
#[derive(Debug, Default)]
pub struct DecodedInputs {
    pub tensors: Vec<Tensor>,
    pub shm: Vec<ShmInput>,
}

/// The `shared_memory_*` parameters of a tensor.
fn shm_reference(
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
/// over are ignored, as Triton ignores them).
pub fn decode_inputs(request: &pb::ModelInferRequest) -> Result<DecodedInputs, String> {
    let raw = &request.raw_input_contents;
    let model = &request.model_name;
    let mut decoded = DecodedInputs::default();
    let mut next_raw = 0;
    for input in &request.inputs {
        let name = &input.name;
        let datatype = codec::datatype(&input.datatype).map_err(|e| format!("input `{name}`: {e}"))?;
        let shape: Vec<usize> = input
            .shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("input `{name}`: shape dimension {d} is negative")))
            .collect::<Result<_, _>>()?;
        if let Some(at) = shm_reference(&input.parameters, &format!("input '{name}'"))? {
            if input.contents.is_some() {
                return Err(format!(
                    "unexpected 'content' provided when using shared memory for input tensor '{name}' for model '{model}'"
                ));
            }
            decoded.shm.push(ShmInput { name: name.clone(), datatype, shape, at });
            continue;
        }
        let count = codec::elements(&shape).ok_or_else(|| format!("input `{name}`: shape {shape:?} is too large"))?;
        let data = match &input.contents {
            Some(_) if !raw.is_empty() => {
                return Err(format!(
                    "contents field must not be specified when using raw_input_contents for '{name}' for model '{model}'"
                ));
            }
            Some(contents) => typed(contents, datatype, count, name, model, &request.id)?,
            None => {
                let bytes = raw.get(next_raw).ok_or_else(|| {
                    format!("unable to find data for input tensor '{name}' for model '{model}' in request.")
                })?;
                next_raw += 1;
                if let Some(expected) = datatype.size().map(|size| count.saturating_mul(size))
                    && expected != bytes.len()
                {
                    let id = Some(request.id.as_str());
                    return Err(crate::error::byte_size_mismatch(id, name, model, expected, bytes.len()).message);
                }
                TensorData::from_wire(datatype, bytes, count)
                    .map_err(|e| format!("input `{name}`: raw_input_contents has {e}"))?
            }
        };
        decoded.tensors.push(Tensor::new(name.clone(), shape, data));
    }
    Ok(decoded)
}

/// Typed `contents` as `datatype`: its own field must hold the shape's values (Triton's
/// words for another field, or a count that is not the shape's).
fn typed(
    c: &pb::InferTensorContents,
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
        return Err(format!(
            "unexpected explicit tensor data for input tensor '{name}' for model '{model}' of type '{other}', expected datatype '{}'",
            datatype.kserve_name()
        ));
    }
    let given = fields.iter().find(|&&(f, _)| f == field).map_or(0, |&(_, len)| len);
    if given != count {
        let size = datatype.size().unwrap_or(1);
        // `count` may be any size a shape names: the product saturates rather than wraps.
        let (expected, got) = (count.saturating_mul(size), given.saturating_mul(size));
        return Err(crate::error::byte_size_mismatch(Some(id), name, model, expected, got).message);
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(c.bool_contents.clone()),
        DataType::U8 => TensorData::U8(narrow(&c.uint_contents, datatype)?),
        DataType::U16 => TensorData::U16(narrow(&c.uint_contents, datatype)?),
        DataType::U32 => TensorData::U32(c.uint_contents.clone()),
        DataType::U64 => TensorData::U64(c.uint64_contents.clone()),
        DataType::I8 => TensorData::I8(narrow(&c.int_contents, datatype)?),
        DataType::I16 => TensorData::I16(narrow(&c.int_contents, datatype)?),
        DataType::I32 => TensorData::I32(c.int_contents.clone()),
        DataType::I64 => TensorData::I64(c.int64_contents.clone()),
        DataType::F32 => TensorData::F32(c.fp32_contents.clone()),
        DataType::F64 => TensorData::F64(c.fp64_contents.clone()),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents.clone()),
        DataType::F16 | DataType::BF16 => unreachable!("refused above"),
    })
}

fn tensor_metadata(views: Vec<metadata::TensorView>) -> Vec<pb::model_metadata_response::TensorMetadata> {
    views
        .into_iter()
        .map(|t| pb::model_metadata_response::TensorMetadata {
            name: t.name,
            datatype: t.datatype.kserve_name().to_owned(),
            shape: t.shape,
        })
        .collect()
}

/// `uint_contents` or `int_contents` as a narrower type, each value checked to fit.
fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(values: &[S], datatype: DataType) -> Result<Vec<T>, String> {
    values.iter().map(|&x| T::try_from(x).map_err(|_| format!("{x} is not a {datatype} value"))).collect()
}

fn sequence_batching(sequence: &crate::repository::SequenceConfig) -> pb::ModelSequenceBatching {
    use crate::repository::{ControlKind, Flag, FlagValues};
    use pb::model_sequence_batching::{Control, ControlInput, StrategyDirect, control::Kind};
    let control_input = sequence
        .controls
        .iter()
        .map(|c| {
            let mut control = Control::default();
            match c.kind {
                ControlKind::Flag(flag, values) => {
                    control.kind = match flag {
                        Flag::Start => Kind::ControlSequenceStart,
                        Flag::End => Kind::ControlSequenceEnd,
                        Flag::Ready => Kind::ControlSequenceReady,
                    } as i32;
                    match values {
                        FlagValues::Int32(v) => control.int32_false_true = v.to_vec(),
                        FlagValues::Fp32(v) => control.fp32_false_true = v.to_vec(),
                        FlagValues::Bool(v) => control.bool_false_true = v.to_vec(),
                    }
                }
                ControlKind::CorrId(datatype) => {
                    control.kind = Kind::ControlSequenceCorrid as i32;
                    control.data_type = data_type(datatype);
                }
            }
            ControlInput { name: c.input.clone(), control: vec![control] }
        })
        .collect();
    pb::ModelSequenceBatching {
        max_sequence_idle_microseconds: sequence.idle.as_micros() as u64,
        control_input,
        direct: Some(StrategyDirect {}),
    }
}

fn data_type(datatype: DataType) -> i32 {
    let value = match datatype {
        DataType::Bool => pb::DataType::TypeBool,
        DataType::U8 => pb::DataType::TypeUint8,
        DataType::U16 => pb::DataType::TypeUint16,
        DataType::U32 => pb::DataType::TypeUint32,
        DataType::U64 => pb::DataType::TypeUint64,
        DataType::I8 => pb::DataType::TypeInt8,
        DataType::I16 => pb::DataType::TypeInt16,
        DataType::I32 => pb::DataType::TypeInt32,
        DataType::I64 => pb::DataType::TypeInt64,
        DataType::F16 => pb::DataType::TypeFp16,
        DataType::BF16 => pb::DataType::TypeBf16,
        DataType::F32 => pb::DataType::TypeFp32,
        DataType::F64 => pb::DataType::TypeFp64,
        DataType::Bytes => pb::DataType::TypeString,
    };
    value as i32
}

fn duration(tally: &Tally) -> Option<pb::StatisticDuration> {
    use std::sync::atomic::Ordering::Relaxed;
    Some(pb::StatisticDuration { count: tally.count.load(Relaxed), ns: tally.ns.load(Relaxed) })
}

/// Triton's `compute_input` (0), `compute_infer` (1) or `compute_output` (2).
fn compute(counters: &crate::counters::Counters, which: usize) -> Option<pb::StatisticDuration> {
    let (count, ns) = counters.compute.read()[which];
    Some(pb::StatisticDuration { count, ns })
}

type Answer<T> = Result<Response<T>, Status>;

/// Requests of one stream running or answered but not yet sent, before reading waits.
const STREAM_IN_FLIGHT_MAX: usize = 256;

fn stream_error(message: &str, id: String, model_name: String, model_version: String) -> pb::ModelStreamInferResponse {
    let response = pb::ModelInferResponse { model_name, model_version, id, ..Default::default() };
    pb::ModelStreamInferResponse { error_message: message.to_owned(), infer_response: Some(response) }
}

/// A request's `sequence_id`, `sequence_start` and `sequence_end` parameters.
fn sequence_params(
    parameters: &std::collections::HashMap<String, pb::InferParameter>,
) -> Result<SequenceParams, String> {
    use pb::infer_parameter::ParameterChoice;
    let get = |key: &str| parameters.get(key).and_then(|p| p.parameter_choice.as_ref());
    let id = get("sequence_id").map(|id| match id {
        ParameterChoice::StringParam(text) => Ok(SequenceId::Text(text.clone())),
        ParameterChoice::Int64Param(n) if *n >= 0 => Ok(SequenceId::Number(*n as u64)),
        ParameterChoice::Uint64Param(n) => Ok(SequenceId::Number(*n)),
        _ => Err("sequence_id must be a whole number or a string".to_owned()),
    });
    let flag = |key: &str| match get(key) {
        None => Ok(None),
        Some(ParameterChoice::BoolParam(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{key} must be true or false")),
    };
    SequenceParams::read(id, flag("sequence_start")?, flag("sequence_end")?)
}

/// One ModelInfer call, as the unary RPC and each message of a stream run it.
async fn infer_one(state: &ServerState, r: pb::ModelInferRequest) -> Result<pb::ModelInferResponse, Status> {
    let received = std::time::Instant::now();
    let served = state.model(&r.model_name, &r.model_version).map_err(status)?;
    let mut trace = state.trace(&served, received);
    let decoding = std::time::Instant::now();
    let DecodedInputs { mut tensors, shm: shm_inputs } =
        decode_inputs(&r).map_err(|e| status(state.refused(&served, CallError::bad_request(e))))?;
    let wanted = r
        .outputs
        .iter()
        .map(|o| {
            let shm =
                shm_reference(&o.parameters, &format!("output '{}'", o.name)).map_err(Status::invalid_argument)?;
            use pb::infer_parameter::ParameterChoice;
            let class_count = match o.parameters.get("classification").and_then(|p| p.parameter_choice.as_ref()) {
                None => 0,
                Some(ParameterChoice::Int64Param(k)) if *k >= 0 => *k as usize,
                Some(ParameterChoice::Uint64Param(k)) => *k as usize,
                Some(_) => {
                    return Err(Status::invalid_argument(format!(
                        "output `{}`: classification must be a whole number 0 or more",
                        o.name
                    )));
                }
            };
            Ok(codec::WantedOutput { name: o.name.clone(), binary: None, shm, class_count })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    let metas: Vec<crate::validate::InputMeta> = tensors
        .iter()
        .map(|t| crate::validate::InputMeta { name: &t.name, datatype: t.datatype(), shape: &t.shape })
        .chain(shm_inputs.iter().map(|i| crate::validate::InputMeta {
            name: &i.name,
            datatype: i.datatype,
            shape: &i.shape,
        }))
        .collect();
    let asked: Vec<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
    crate::validate::request(&served, Some(&r.id), &metas, &asked).map_err(|e| status(state.refused(&served, e)))?;
    let wanted = metadata::wanted_outputs(&served, &wanted, true).map_err(status)?;
    drop(r.raw_input_contents);
    for input in &shm_inputs {
        tensors.push(input.read(&state.shm).map_err(status)?);
    }
    let sequence = sequence_params(&r.parameters).map_err(Status::invalid_argument)?;
    let decoded = decoding.elapsed();
    let batch = served.batch_of(&tensors);
    if let Some(trace) = &mut trace {
        trace.point("QUEUE_START", std::time::Instant::now());
    }
    let inference = state.infer(&served, tensors, &sequence, decoded).await.map_err(status)?;
    ServerState::traced_compute(&mut trace, &inference);
    let encoding = std::time::Instant::now();
    let mut outputs = Vec::with_capacity(wanted.len());
    let mut raw = Vec::with_capacity(wanted.len());
    for want in &wanted {
        let Some(tensor) = inference.outputs.iter().find(|t| t.name == want.name) else { continue };
        let tensor = want.answer(&served, tensor).map_err(status)?;
        let bytes = tensor.data.to_le_bytes();
        let mut parameters = std::collections::HashMap::new();
        match &want.shm {
            Some(at) => {
                state.shm.write(at, &bytes, &format!("output '{}'", want.name)).map_err(status)?;
                use pb::infer_parameter::ParameterChoice;
                let param = |choice| pb::InferParameter { parameter_choice: Some(choice) };
                parameters
                    .insert("shared_memory_region".to_owned(), param(ParameterChoice::StringParam(at.region.clone())));
                parameters
                    .insert("shared_memory_offset".to_owned(), param(ParameterChoice::Int64Param(at.offset as i64)));
                parameters.insert(
                    "shared_memory_byte_size".to_owned(),
                    param(ParameterChoice::Int64Param(bytes.len() as i64)),
                );
                // Clients index raw_output_contents by output position: keep the places.
                raw.push(Vec::new());
            }
            None => raw.push(bytes),
        }
        outputs.push(pb::model_infer_response::InferOutputTensor {
            name: tensor.name.clone(),
            datatype: tensor.datatype().kserve_name().to_owned(),
            shape: tensor.shape.iter().map(|&d| d as i64).collect(),
            parameters,
            contents: None,
        });
    }
    state.encoded(&served, batch, decoded, &inference, encoding.elapsed());
    state.trace_end(trace);
    Ok(pb::ModelInferResponse {
        model_name: served.name.clone(),
        model_version: served.version.clone(),
        id: r.id,
        parameters: Default::default(),
        outputs,
        raw_output_contents: raw,
    })
}

#[tonic::async_trait]
impl GrpcInferenceService for Grpc {
    async fn server_live(&self, _: Request<pb::ServerLiveRequest>) -> Answer<pb::ServerLiveResponse> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<pb::ServerReadyRequest>) -> Answer<pb::ServerReadyResponse> {
        Ok(Response::new(pb::ServerReadyResponse { ready: self.state.is_ready() }))
    }

    async fn model_ready(&self, request: Request<pb::ModelReadyRequest>) -> Answer<pb::ModelReadyResponse> {
        let r = request.into_inner();
        // Triton (server.cc, ModelIsReady): a model or version that is not loaded is not
        // ready, not an error; a version string that is no number is.
        let ready = match self.state.model(&r.name, &r.version) {
            Ok(_) => true,
            Err(e) if e.kind == ErrorKind::NotFound => false,
            Err(e) => return Err(status(e)),
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(&self, _: Request<pb::ServerMetadataRequest>) -> Answer<pb::ServerMetadataResponse> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: metadata::SERVER_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            extensions: metadata::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(&self, request: Request<pb::ModelMetadataRequest>) -> Answer<pb::ModelMetadataResponse> {
        let r = request.into_inner();
        let served = self.state.model(&r.name, &r.version).map_err(status)?;
        Ok(Response::new(pb::ModelMetadataResponse {
            name: served.name.clone(),
            versions: metadata::versions_listed(&self.state, &served, &r.version),
            platform: served.config.platform.clone(),
            inputs: tensor_metadata(metadata::inputs(&served)),
            outputs: tensor_metadata(metadata::outputs(&served)),
        }))
    }

    async fn model_infer(&self, request: Request<pb::ModelInferRequest>) -> Answer<pb::ModelInferResponse> {
        // Only a client that compressed its request gets a compressed answer: gRPC clients
        // advertise gzip by default, and deflating every float tensor costs CPU for little.
        let compressed = request.metadata().get("grpc-encoding").is_some_and(|e| e != "identity");
        let mut response = Response::new(infer_one(&self.state, request.into_inner()).await?);
        if !compressed {
            response.disable_compression();
        }
        Ok(response)
    }

    async fn system_shared_memory_status(
        &self,
        request: Request<pb::SystemSharedMemoryStatusRequest>,
    ) -> Answer<pb::SystemSharedMemoryStatusResponse> {
        let name = request.into_inner().name;
        let regions = self.state.shm.status((!name.is_empty()).then_some(name.as_str())).map_err(status)?;
        let regions = regions
            .into_iter()
            .map(|r| {
                let status = pb::system_shared_memory_status_response::RegionStatus {
                    name: r.name.clone(),
                    key: r.key,
                    offset: r.offset,
                    byte_size: r.byte_size,
                };
                (r.name, status)
            })
            .collect();
        Ok(Response::new(pb::SystemSharedMemoryStatusResponse { regions }))
    }

    async fn system_shared_memory_register(
        &self,
        request: Request<pb::SystemSharedMemoryRegisterRequest>,
    ) -> Answer<pb::SystemSharedMemoryRegisterResponse> {
        let r = request.into_inner();
        self.state.shm.register(&r.name, &r.key, r.offset, r.byte_size).map_err(status)?;
        Ok(Response::new(pb::SystemSharedMemoryRegisterResponse {}))
    }

    async fn system_shared_memory_unregister(
        &self,
        request: Request<pb::SystemSharedMemoryUnregisterRequest>,
    ) -> Answer<pb::SystemSharedMemoryUnregisterResponse> {
        let name = request.into_inner().name;
        self.state.shm.unregister((!name.is_empty()).then_some(name.as_str()));
        Ok(Response::new(pb::SystemSharedMemoryUnregisterResponse {}))
    }

    // Triton built without GPUs (grpc_server.cc): status lists no region, unregister
    // succeeds, register is refused.
    async fn cuda_shared_memory_status(
        &self,
        request: Request<pb::CudaSharedMemoryStatusRequest>,
    ) -> Answer<pb::CudaSharedMemoryStatusResponse> {
        let name = request.into_inner().name;
        shm::cuda_status(&self.state.shm, (!name.is_empty()).then_some(name.as_str())).map_err(status)?;
        Ok(Response::new(pb::CudaSharedMemoryStatusResponse::default()))
    }

    async fn cuda_shared_memory_register(
        &self,
        request: Request<pb::CudaSharedMemoryRegisterRequest>,
    ) -> Answer<pb::CudaSharedMemoryRegisterResponse> {
        Err(status(shm::cuda_register(&request.into_inner().name)))
    }

    async fn cuda_shared_memory_unregister(
        &self,
        _: Request<pb::CudaSharedMemoryUnregisterRequest>,
    ) -> Answer<pb::CudaSharedMemoryUnregisterResponse> {
        Ok(Response::new(pb::CudaSharedMemoryUnregisterResponse {}))
    }

    /// Triton's trace extension (grpc_server.cc, TraceSetting): a key with no values clears it.
    async fn trace_setting(&self, request: Request<pb::TraceSettingRequest>) -> Answer<pb::TraceSettingResponse> {
        let r = request.into_inner();
        let model = (!r.model_name.is_empty()).then_some(r.model_name.as_str());
        if let Some(model) = model {
            self.state.model(model, "").map_err(status)?;
        }
        let setting = if r.settings.is_empty() {
            self.state.trace.get(model)
        } else {
            let settings = r.settings.into_iter().map(|(k, v)| (k, v.value)).collect();
            let update = crate::trace::Update::from_grpc(&settings).map_err(status)?;
            self.state.trace.update(model, &update).map_err(status)?
        };
        let settings = setting
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| {
                let value = match value {
                    serde_json::Value::Array(items) => {
                        items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
                    }
                    serde_json::Value::String(text) => vec![text.clone()],
                    other => vec![other.to_string()],
                };
                (key.clone(), pb::trace_setting_response::SettingValue { value })
            })
            .collect();
        Ok(Response::new(pb::TraceSettingResponse { settings }))
    }

    async fn log_settings(&self, _: Request<pb::LogSettingsRequest>) -> Answer<pb::LogSettingsResponse> {
        Err(Status::unimplemented("log settings are not supported by corral; set RUST_LOG or -v at start"))
    }

    type ModelStreamInferStream = ReceiverStream<Result<pb::ModelStreamInferResponse, Status>>;

    /// Every request of the stream runs as it arrives (as many at once as the client sends;
    /// a request of a sequence waits for the one before it); answers go back in the order the
    /// requests came. A failed request is answered with its `error_message` (and its id), and
    /// the stream goes on.
    async fn model_stream_infer(
        &self,
        request: Request<tonic::Streaming<pb::ModelInferRequest>>,
    ) -> Answer<Self::ModelStreamInferStream> {
        let mut inbound = request.into_inner();
        let (answers, outbound) = tokio::sync::mpsc::channel(STREAM_IN_FLIGHT_MAX);
        let (order, mut in_order) = tokio::sync::mpsc::channel(STREAM_IN_FLIGHT_MAX);
        let state = self.state.clone();
        tokio::spawn(async move {
            // Reads requests until the client closes its side (or the stream breaks).
            while let Ok(Some(request)) = inbound.message().await {
                let state = state.clone();
                let id = (request.id.clone(), request.model_name.clone(), request.model_version.clone());
                // A sequence's requests must reach the model in the order sent: run each to
                // its end before reading the next. Other requests run side by side.
                let in_sequence = request.parameters.contains_key("sequence_id");
                let call = if in_sequence {
                    let result = infer_one(&state, request).await;
                    tokio::spawn(async move { result })
                } else {
                    tokio::spawn(async move { infer_one(&state, request).await })
                };
                if order.send((id, call)).await.is_err() {
                    return; // the client stopped reading answers
                }
            }
        });
        tokio::spawn(async move {
            while let Some(((id, model_name, model_version), call)) = in_order.recv().await {
                let answer = match call.await {
                    Ok(Ok(response)) => {
                        pb::ModelStreamInferResponse { error_message: String::new(), infer_response: Some(response) }
                    }
                    Ok(Err(status)) => stream_error(status.message(), id, model_name, model_version),
                    Err(_) => stream_error("the request failed inside the server", id, model_name, model_version),
                };
                if answers.send(Ok(answer)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(outbound)))
    }

    async fn model_config(&self, request: Request<pb::ModelConfigRequest>) -> Answer<pb::ModelConfigResponse> {
        let r = request.into_inner();
        let served = self.state.model(&r.name, &r.version).map_err(status)?;
        let input = metadata::inputs(&served)
            .into_iter()
            .map(|t| pb::ModelInput {
                name: t.name,
                data_type: data_type(t.datatype),
                format: t.format.and_then(|f| pb::model_input::Format::from_str_name(&f)).map_or(0, |f| f as i32),
                dims: t.dims,
            })
            .collect();
        let output = metadata::outputs(&served)
            .into_iter()
            .map(|t| pb::ModelOutput {
                name: t.name,
                data_type: data_type(t.datatype),
                dims: t.dims,
                label_filename: t.label_filename.unwrap_or_default(),
            })
            .collect();
        let parameters = [
            (
                "corral.cores".to_owned(),
                pb::ModelParameter { string_value: served.model.cores_per_instance().to_string() },
            ),
            ("corral.elastic".to_owned(), pb::ModelParameter { string_value: served.model.elastic().to_string() }),
        ]
        .into_iter()
        .collect();
        let config = pb::ModelConfig {
            name: served.name.clone(),
            platform: served.config.platform.clone(),
            backend: metadata::backend(&served).to_owned(),
            max_batch_size: served.config.max_batch_size as i32,
            input,
            output,
            instance_group: vec![pb::ModelInstanceGroup {
                name: served.name.clone(),
                count: served.model.instances().len() as i32,
                kind: pb::model_instance_group::Kind::Cpu as i32,
            }],
            dynamic_batching: served.config.batch_delay.map(|d| pb::ModelDynamicBatching {
                preferred_batch_size: Vec::new(),
                max_queue_delay_microseconds: d.as_micros() as u64,
            }),
            sequence_batching: served.config.sequence.as_ref().map(sequence_batching),
            parameters,
        };
        Ok(Response::new(pb::ModelConfigResponse { config: Some(config) }))
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Answer<pb::ModelStatisticsResponse> {
        use std::sync::atomic::Ordering::Relaxed;
        let r = request.into_inner();
        // Triton: no name means every model, no version every loaded version of the model.
        let served = match (r.name.is_empty(), r.version.is_empty()) {
            (true, _) => self.state.served(),
            (false, true) => {
                self.state.model(&r.name, "").map_err(status)?;
                self.state.versions(&r.name)
            }
            (false, false) => vec![self.state.model(&r.name, &r.version).map_err(status)?],
        };
        let model_stats = served
            .iter()
            .map(|s| {
                let c = &s.counters;
                pb::ModelStatistics {
                    name: s.name.clone(),
                    version: s.version.clone(),
                    last_inference: c.last_inference_ms.load(Relaxed),
                    inference_count: c.inferences.load(Relaxed),
                    execution_count: c.executions.load(Relaxed),
                    inference_stats: Some(pb::InferStatistics {
                        success: duration(&c.success),
                        fail: duration(&c.fail),
                        queue: duration(&c.queue),
                        compute_input: compute(c, 0),
                        compute_infer: compute(c, 1),
                        compute_output: compute(c, 2),
                        cache_hit: duration(&Tally::default()),
                        cache_miss: duration(&Tally::default()),
                    }),
                    batch_stats: c
                        .batch_stats()
                        .into_iter()
                        .map(|(batch_size, b)| {
                            let of = |ns| Some(pb::StatisticDuration { count: b.count, ns });
                            pb::InferBatchStatistics {
                                batch_size,
                                compute_input: of(b.compute_input_ns),
                                compute_infer: of(b.compute_infer_ns),
                                compute_output: of(b.compute_output_ns),
                            }
                        })
                        .collect(),
                    memory_usage: Vec::new(),
                    response_stats: Default::default(),
                }
            })
            .collect();
        Ok(Response::new(pb::ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(
        &self,
        request: Request<pb::RepositoryIndexRequest>,
    ) -> Answer<pb::RepositoryIndexResponse> {
        let ready_only = request.into_inner().ready;
        let models = self
            .state
            .index()
            .into_iter()
            .filter(|e| !ready_only || e.state == Some("READY"))
            .map(|e| pb::repository_index_response::ModelIndex {
                name: e.name,
                version: e.version.unwrap_or_default(),
                state: e.state.unwrap_or_default().to_owned(),
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<pb::RepositoryModelLoadRequest>,
    ) -> Answer<pb::RepositoryModelLoadResponse> {
        let r = request.into_inner();
        let mut over = crate::repository::LoadOverride::default();
        // Triton's words (grpc_server.cc, RepositoryModelLoad).
        for (key, parameter) in r.parameters {
            use pb::model_repository_parameter::ParameterChoice;
            match (key.as_str(), parameter.parameter_choice) {
                ("config", Some(ParameterChoice::StringParam(text))) => over.config(&text),
                ("config", _) => {
                    return Err(Status::invalid_argument(format!(
                        "invalid value type for load parameter '{key}', expected string_param."
                    )));
                }
                (file, Some(ParameterChoice::BytesParam(bytes))) if file.starts_with("file:") => over.file(file, bytes),
                (file, _) if file.starts_with("file:") => {
                    return Err(Status::invalid_argument(format!(
                        "invalid value type for load parameter '{key}', expected bytes_param."
                    )));
                }
                _ => return Err(Status::invalid_argument(format!("unrecognized load parameter '{key}'."))),
            }
        }
        self.state.request_load(&r.model_name, over).await.map_err(status)?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Answer<pb::RepositoryModelUnloadResponse> {
        self.state.request_unload(&request.into_inner().model_name).await.map_err(status)?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}
