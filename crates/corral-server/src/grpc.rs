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

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{error::ErrorKind, metadata, shm, state::ServerState, triton};

mod call;
mod config;
mod decode;
pub mod pb;
pub mod sized;
mod status;

use call::{infer_decoupled, infer_one, stream_error};
use config::{model_statistics, tensor_metadata};
pub use decode::{DecodedInputs, decode_inputs};
use status::status;

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

type Answer<T> = Result<Response<T>, Status>;

/// Requests of one stream running or answered but not yet sent, before reading waits.
const STREAM_IN_FLIGHT_MAX: usize = 256;

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
            Ok(served) => self.state.ready(&served),
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
        self.state.shm.unregister((!name.is_empty()).then_some(name.as_str())).map_err(status)?;
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
        Err(status(triton::cuda_register_grpc(&request.into_inner().name)))
    }

    async fn cuda_shared_memory_unregister(
        &self,
        _: Request<pb::CudaSharedMemoryUnregisterRequest>,
    ) -> Answer<pb::CudaSharedMemoryUnregisterResponse> {
        self.state.shm.check_allowed().map_err(status)?;
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
        let answers_now = answers.clone();
        let (order, mut in_order) = tokio::sync::mpsc::channel(STREAM_IN_FLIGHT_MAX);
        let state = self.state.clone();
        tokio::spawn(async move {
            // Reads requests until the client closes its side (or the stream breaks).
            while let Ok(Some(request)) = inbound.message().await {
                let state = state.clone();
                let id = (request.id.clone(), request.model_name.clone(), request.model_version.clone());
                // A decoupled model's responses go out as it sends them, between others'
                // answers: the order of answers holds for other models only.
                if state.model(&request.model_name, &request.model_version).is_ok_and(|s| s.config.decoupled) {
                    let answers = answers_now.clone();
                    tokio::spawn(async move { infer_decoupled(&state, request, &answers).await });
                    continue;
                }
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
        Ok(Response::new(pb::ModelConfigResponse { config: Some(metadata::config(&served)) }))
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Answer<pb::ModelStatisticsResponse> {
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
        let model_stats = served.iter().map(|s| model_statistics(metadata::model_stats(s))).collect();
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
        let mut over = crate::overrides::LoadOverride::default();
        // `config` is a string, `file:` ones bytes, as Triton takes them.
        for (key, parameter) in r.parameters {
            use pb::model_repository_parameter::ParameterChoice;
            match (key.as_str(), parameter.parameter_choice) {
                ("config", Some(ParameterChoice::StringParam(text))) => over.config(&text),
                ("config", _) => return Err(status(triton::load_parameter_type(&key, "string_param"))),
                (file, Some(ParameterChoice::BytesParam(bytes))) if file.starts_with("file:") => over.file(file, bytes),
                (file, _) if file.starts_with("file:") => {
                    return Err(status(triton::load_parameter_type(&key, "bytes_param")));
                }
                _ => return Err(status(triton::unknown_load_parameter(&key))),
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
