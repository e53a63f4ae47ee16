//! The KServe v2 REST API with Triton's extensions (binary tensors, model config and
//! statistics, repository control), on axum.
//!
//! Every error is `{"error": "..."}` with Triton's status: 400 bad request, 404 unknown model,
//! 413 body over the limit, 503 not ready or timed out, 500 engine failure.
//!
//! Every request's body is read (up to the body limit) before any handler answers, so an
//! early error (an unknown or unloaded model, a bad header) reaches the client as a status
//! instead of a connection closed under a body it is still sending.
//!
//! Compression (`compress.rs`): a body with `Content-Encoding: gzip` or `deflate` is inflated
//! there too, under the same limit, checked while inflating; an answer is compressed when the
//! request's `Accept-Encoding` names gzip or deflate.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    extract::{Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use crate::{
    codec, compress,
    error::{CallError, ErrorKind},
    metadata,
    state::ServerState,
};

type AppState = Arc<ServerState>;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(model_metadata_v))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(model_ready_v))
        .route("/v2/models/{model}/config", get(model_config))
        .route("/v2/models/{model}/versions/{version}/config", get(model_config_v))
        .route("/v2/models/{model}/stats", get(model_stats))
        .route("/v2/models/{model}/versions/{version}/stats", get(model_stats_v))
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer_v))
        .route("/v2/repository/index", post(index))
        .route("/v2/repository/models/{model}/load", post(load))
        .route("/v2/repository/models/{model}/unload", post(unload))
        .route("/v2/systemsharedmemory/status", get(shm_status_all))
        .route("/v2/systemsharedmemory/region/{name}/status", get(shm_status))
        .route("/v2/systemsharedmemory/region/{name}/register", post(shm_register))
        .route("/v2/systemsharedmemory/unregister", post(shm_unregister_all))
        .route("/v2/systemsharedmemory/region/{name}/unregister", post(shm_unregister))
        .route("/v2/cudasharedmemory/{*rest}", get(cuda_shm).post(cuda_shm))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint; see the KServe v2 protocol") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), read_body_first))
        .with_state(state)
}

/// Reads the whole body (within the limit) before the handler runs, inflating a compressed
/// one, and compresses the answer when asked; see the module docs.
async fn read_body_first(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let answer_encoding = compress::accepted(&parts.headers);
    let bytes = match body_bytes(&state, &parts.headers, body).await {
        Ok(bytes) => bytes,
        Err(error) => return compress::answer(error.into_response(), answer_encoding).await,
    };
    let bytes = match compress::inflate_request(&mut parts.headers, bytes, state.body_limit).await {
        Ok(bytes) => bytes,
        Err(error) => return compress::answer(error.into_response(), answer_encoding).await,
    };
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    compress::answer(response, answer_encoding).await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for CallError {
    fn into_response(self) -> Response {
        error(status_of(self.kind), self.message)
    }
}

type Answer = Result<Response, CallError>;

fn ok_json(value: Value) -> Answer {
    Ok(axum::Json(value).into_response())
}

async fn server_metadata() -> Answer {
    ok_json(metadata::server())
}

async fn live() -> Answer {
    ok_json(json!({ "live": true }))
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        axum::Json(json!({ "ready": true })).into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "the server is still loading its models")
    }
}

async fn model_metadata(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    ok_json(metadata::model(&*state.model(&model, "")?))
}

async fn model_metadata_v(State(state): State<AppState>, Path((model, version)): Path<(String, String)>) -> Answer {
    ok_json(metadata::model(&*state.model(&model, &version)?))
}

fn readiness(state: &ServerState, model: &str, version: &str) -> Response {
    match state.model(model, version) {
        Ok(_) => axum::Json(json!({ "ready": true })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.message),
    }
}

async fn model_ready(State(state): State<AppState>, Path(model): Path<String>) -> Response {
    readiness(&state, &model, "")
}

async fn model_ready_v(State(state): State<AppState>, Path((model, version)): Path<(String, String)>) -> Response {
    readiness(&state, &model, &version)
}

async fn model_config(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    ok_json(metadata::config(&*state.model(&model, "")?))
}

async fn model_config_v(State(state): State<AppState>, Path((model, version)): Path<(String, String)>) -> Answer {
    ok_json(metadata::config(&*state.model(&model, &version)?))
}

async fn all_stats(State(state): State<AppState>) -> Answer {
    let stats: Vec<Value> = state.served().iter().map(|s| metadata::stats(s)).collect();
    ok_json(json!({ "model_stats": stats }))
}

async fn model_stats(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    ok_json(json!({ "model_stats": [metadata::stats(&*state.model(&model, "")?)] }))
}

async fn model_stats_v(State(state): State<AppState>, Path((model, version)): Path<(String, String)>) -> Answer {
    ok_json(json!({ "model_stats": [metadata::stats(&*state.model(&model, &version)?)] }))
}

/// The body, refused with 413 beyond the limit (announced or actual).
async fn body_bytes(state: &ServerState, headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, CallError> {
    let limit = state.body_limit;
    let too_large = || {
        CallError::new(
            ErrorKind::TooLarge,
            format!("the request body is over the limit of {limit} bytes; raise --max-body-bytes"),
        )
    };
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|_| too_large())
}

async fn infer(State(state): State<AppState>, Path(model): Path<String>, headers: HeaderMap, body: Body) -> Answer {
    infer_at(state, model, String::new(), headers, body).await
}

async fn infer_v(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    infer_at(state, model, version, headers, body).await
}

const HEADER_LEN: &str = "inference-header-content-length";

async fn infer_at(state: AppState, model: String, version: String, headers: HeaderMap, body: Body) -> Answer {
    let served = state.model(&model, &version)?;
    let body = body_bytes(&state, &headers, body).await?;
    let header_len = match headers.get(HEADER_LEN) {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()).ok_or_else(|| {
            CallError::bad_request("Inference-Header-Content-Length must be a whole number of bytes")
        })?),
    };
    let decoding = std::time::Instant::now();
    let mut request = codec::decode(&body, header_len).map_err(|e| CallError::bad_request(e.0))?;
    drop(body);
    let wanted = metadata::wanted_outputs(&served, &request.outputs, request.binary_output)?;
    for input in &request.shm_inputs {
        request.inputs.push(input.read(&state.shm)?);
    }
    let decoded = decoding.elapsed();
    let inference = state.infer(&served, request.inputs, &request.sequence, decoded).await?;
    let encoding = std::time::Instant::now();
    let mut outputs = Vec::with_capacity(wanted.len());
    for want in &wanted {
        let Some(tensor) = inference.outputs.iter().find(|t| t.name == want.name) else { continue };
        let tensor = want.answer(&served, tensor)?;
        let form = match &want.shm {
            Some(at) => {
                state.shm.write(at, &tensor.data.to_le_bytes(), &format!("output '{}'", want.name))?;
                codec::OutputForm::Shm(at.clone())
            }
            None if want.binary => codec::OutputForm::Binary,
            None => codec::OutputForm::Json,
        };
        outputs.push((tensor, form));
    }
    let outputs: Vec<(&corral_engine::Tensor, codec::OutputForm)> =
        outputs.iter().map(|(tensor, form)| (tensor.as_ref(), form.clone())).collect();
    let encoded = codec::encode(&served.name, &served.version, request.id.as_deref(), &outputs);
    state.encoded(&served, encoding.elapsed());
    let mut response = Response::new(Body::from(encoded.body));
    let headers = response.headers_mut();
    match encoded.header_len {
        Some(n) => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            headers.insert(HEADER_LEN, HeaderValue::from(n));
        }
        None => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    Ok(response)
}

async fn shm_status_all(State(state): State<AppState>) -> Answer {
    shm_status_of(&state, None)
}

async fn shm_status(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    shm_status_of(&state, Some(&name))
}

fn shm_status_of(state: &ServerState, name: Option<&str>) -> Answer {
    let regions = state.shm.status(name)?;
    let list = regions
        .into_iter()
        .map(|r| json!({ "name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size }));
    ok_json(Value::Array(list.collect()))
}

async fn shm_register(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let body = body_bytes(&state, &headers, body).await?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| CallError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let key = value.get("key").and_then(Value::as_str).ok_or_else(|| {
        CallError::bad_request("registering a region needs {\"key\": \"/name\", \"offset\": N, \"byte_size\": N}")
    })?;
    let number = |field: &str| match value.get(field) {
        None => Ok(0),
        Some(v) => v.as_u64().ok_or_else(|| CallError::bad_request(format!("`{field}` must be a whole number"))),
    };
    state.shm.register(&name, key, number("offset")?, number("byte_size")?)?;
    ok_json(json!({}))
}

async fn shm_unregister_all(State(state): State<AppState>) -> Answer {
    state.shm.unregister(None);
    ok_json(json!({}))
}

async fn shm_unregister(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    state.shm.unregister(Some(&name));
    ok_json(json!({}))
}

async fn cuda_shm() -> Answer {
    Err(CallError::bad_request(crate::shm::CUDA_UNSUPPORTED))
}

async fn index(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Answer {
    let body = body_bytes(&state, &headers, body).await?;
    let ready_only = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| CallError::bad_request(format!("the body is not valid JSON: {e}")))?;
        value.get("ready").and_then(Value::as_bool).unwrap_or(false)
    };
    let entries: Vec<Value> = state
        .index()
        .into_iter()
        .filter(|e| !ready_only || e.state == "READY")
        .map(|e| {
            let mut entry = json!({ "name": e.name, "state": e.state, "reason": e.reason });
            if let Some(version) = e.version {
                entry["version"] = json!(version);
            }
            entry
        })
        .collect();
    ok_json(Value::Array(entries))
}

/// Triton's load: an empty body, or `{"parameters": {"config": "<model config JSON>",
/// "file:1/model.onnx": "<base64>"}}`.
async fn load(State(state): State<AppState>, Path(model): Path<String>, headers: HeaderMap, body: Body) -> Answer {
    let body = body_bytes(&state, &headers, body).await?;
    let mut over = crate::repository::LoadOverride::default();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| CallError::bad_request(format!("the body is not valid JSON: {e}")))?;
        let parameters = match value.get("parameters") {
            None | Some(Value::Null) => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => return Err(CallError::bad_request("`parameters` must be an object")),
        };
        for (key, value) in parameters.into_iter().flatten() {
            let text = value.as_str();
            let bytes = match (key.starts_with("file:"), text) {
                (true, Some(text)) => {
                    use base64::Engine;
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(text.trim())
                        .map_err(|e| CallError::bad_request(format!("load parameter `{key}` is not base64: {e}")))?;
                    Some(decoded)
                }
                _ => None,
            };
            over.add(key, text, bytes).map_err(|e| CallError::bad_request(e.to_string()))?;
        }
    }
    state.request_load(&model, over).await?;
    Ok(StatusCode::OK.into_response())
}

async fn unload(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    state.request_unload(&model).await?;
    Ok(StatusCode::OK.into_response())
}
