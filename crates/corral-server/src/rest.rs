//! The KServe v2 REST API with Triton's extensions (binary tensors, model config and
//! statistics, repository control), on axum.
//!
//! Every error is `{"error": "..."}` with Triton's status: 400 bad request, 404 unknown model,
//! 400 body over the limit, 503 not ready or timed out, 500 engine failure, 501 what Triton
//! does not do either.
//!
//! Every request's body is read (up to the body limit) before any handler answers, so an
//! early error (an unknown or unloaded model, a bad header) reaches the client as a status
//! instead of a connection closed under a body it is still sending. A binary body for a model
//! that batches goes, past its JSON header, straight into its forming batch's buffer
//! (`slab.rs`), so its tensor is copied once on its way into the batch.
//!
//! Compression (`compress.rs`): a body with `Content-Encoding: gzip` or `deflate` is inflated
//! there too, under the same limit, checked while inflating; an inference answer (and only
//! that, as Triton) is compressed when the request's `Accept-Encoding` asks.

use std::sync::Arc;

use axum::{
    Extension, Router,
    body::Body,
    extract::{Path, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use serde_json::{Value, json};

use corral_engine::{Strings, TensorData};

use crate::{
    call, codec, compress,
    error::{CallError, ErrorKind},
    metadata,
    state::{Served, ServerState},
    triton,
};

type AppState = Arc<ServerState>;

pub fn router(state: AppState, restrictions: crate::restrict::Restrictions) -> Router {
    let routes = Router::new()
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
        .route("/v2/trace/setting", get(trace_get).post(trace_post))
        .route("/v2/models/{model}/trace/setting", get(model_trace_get).post(model_trace_post))
        .route("/v2/repository/models/{model}/load", post(load))
        .route("/v2/repository/models/{model}/unload", post(unload))
        .route("/v2/systemsharedmemory/status", get(shm_status_all))
        .route("/v2/systemsharedmemory/region/{name}/status", get(shm_status))
        .route("/v2/systemsharedmemory/register", post(shm_register_unnamed))
        .route("/v2/systemsharedmemory/region/{name}/register", post(shm_register))
        .route("/v2/systemsharedmemory/unregister", post(shm_unregister_all))
        .route("/v2/systemsharedmemory/region/{name}/unregister", post(shm_unregister))
        .route("/v2/cudasharedmemory/status", get(cuda_shm_status_all))
        .route("/v2/cudasharedmemory/region/{name}/status", get(cuda_shm_status))
        .route("/v2/cudasharedmemory/register", post(cuda_shm_register_unnamed))
        .route("/v2/cudasharedmemory/region/{name}/register", post(cuda_shm_register))
        .route("/v2/cudasharedmemory/unregister", post(cuda_shm_unregister))
        .route("/v2/cudasharedmemory/region/{name}/unregister", post(cuda_shm_unregister))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint; see the KServe v2 protocol") });
    // Nothing restricted: no check on any call.
    let routes = if restrictions.is_empty() {
        routes
    } else {
        routes.layer(axum::middleware::from_fn_with_state(Arc::new(restrictions), refuse_restricted))
    };
    routes.layer(axum::middleware::from_fn_with_state(state.clone(), read_body_first)).with_state(state)
}

/// Triton's `--http-restricted-api`: a call of a restricted category without its header is
/// refused once its body is read (Triton checks in each handler).
async fn refuse_restricted(
    State(restrictions): State<Arc<crate::restrict::Restrictions>>,
    request: Request,
    next: Next,
) -> Response {
    let category = crate::restrict::Category::of_path(request.uri().path());
    let headers = request.headers();
    match restrictions.allows(category, |name| headers.get(name).and_then(|v| v.to_str().ok())) {
        Ok(()) => next.run(request).await,
        Err(header) => triton::restricted_api(&header).into_response(),
    }
}

/// Reads the whole body (within the limit) before the handler runs, inflating a compressed
/// one; see the module docs.
async fn read_body_first(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let slot = batch_slot(&state, &parts);
    let (bytes, tensors) = match body_bytes(&state, &parts.headers, body, slot).await {
        Ok(read) => read,
        Err(error) => return error.into_response(),
    };
    if let Some(tensors) = tensors {
        parts.extensions.insert(Tensors(tensors));
    }
    let bytes = match compress::inflate_request(&mut parts.headers, bytes, state.body_limit).await {
        Ok(bytes) => bytes,
        Err(error) if error.kind == ErrorKind::Unsupported => {
            // Triton names what it reads.
            let mut response = error.into_response();
            response.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate"));
            return response;
        }
        Err(error) => return error.into_response(),
    };
    parts.extensions.insert(ReadBody(bytes));
    next.run(Request::from_parts(parts, Body::empty())).await
}

/// The request's body as [`read_body_first`] read it (within the limit, inflated): the one
/// place a handler takes its body from. Only its JSON header when [`Tensors`] has the rest.
#[derive(Clone)]
struct ReadBody(Bytes);

/// A binary body's tensors, when they were read into a batch's buffer (see [`batch_slot`]).
#[derive(Clone)]
struct Tensors(Bytes);

/// Where a body goes when it is a binary inference request for a model whose forming batch
/// takes it in place (`slab.rs`): a POST to the model's `infer`, uncompressed, with its body
/// length and its JSON header's length (more than 0) given.
fn batch_slot(state: &ServerState, parts: &Parts) -> Option<crate::slab::Slot> {
    if parts.method != Method::POST || parts.headers.contains_key(header::CONTENT_ENCODING) {
        return None;
    }
    let number = |name| parts.headers.get(name)?.to_str().ok()?.trim().parse::<usize>().ok();
    let header_len = number(HEADER_LEN).filter(|&n| n > 0 && i32::try_from(n).is_ok())?;
    let length = number(header::CONTENT_LENGTH.as_str()).filter(|&n| n <= state.body_limit)?;
    let segments: Vec<&str> = parts.uri.path().split('/').collect();
    let (model, version) = match segments[..] {
        ["", "v2", "models", model, "infer"] => (model, ""),
        ["", "v2", "models", model, "versions", version, "infer"] => (model, version),
        _ => return None,
    };
    state.model(model, version).ok()?.body_slot(length.checked_sub(header_len)?)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        // Triton answers a body over --http-max-input-size with 400.
        ErrorKind::TooLarge => StatusCode::BAD_REQUEST,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::AlreadyExists => StatusCode::BAD_REQUEST,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
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
    match state.readiness() {
        Ok(()) => axum::Json(json!({ "ready": true })).into_response(),
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, &why),
    }
}

async fn model_metadata(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    model_metadata_at(&state, &model, "")
}

async fn model_metadata_v(State(state): State<AppState>, Path((model, version)): Path<(String, String)>) -> Answer {
    model_metadata_at(&state, &model, &version)
}

fn model_metadata_at(state: &ServerState, model: &str, version: &str) -> Answer {
    let served = state.model(model, version)?;
    ok_json(metadata::model(&served, &metadata::versions_listed(state, &served, version)))
}

/// A model version's readiness: 200 when it serves, else Triton's 400 (a model or version
/// that is not loaded is not an error of the lookup there, only not ready); a version string
/// that is no number is.
fn readiness(state: &ServerState, model: &str, version: &str) -> Response {
    match state.model(model, version) {
        Ok(served) if state.ready(&served) => axum::Json(json!({ "ready": true })).into_response(),
        Ok(_) => triton::model_version_not_ready().into_response(),
        Err(e) if e.kind == ErrorKind::NotFound => triton::model_version_not_ready().into_response(),
        Err(e) => e.into_response(),
    }
}

async fn model_ready(State(state): State<AppState>, Path(model): Path<String>) -> Response {
    readiness(&state, &model, "")
}

async fn model_ready_v(State(state): State<AppState>, Path((model, version)): Path<(String, String)>) -> Response {
    readiness(&state, &model, &version)
}

async fn model_config(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    ok_json(metadata::config_json(&*state.model(&model, "")?))
}

async fn model_config_v(State(state): State<AppState>, Path((model, version)): Path<(String, String)>) -> Answer {
    ok_json(metadata::config_json(&*state.model(&model, &version)?))
}

async fn all_stats(State(state): State<AppState>) -> Answer {
    let stats: Vec<Value> = state.served().iter().map(|s| metadata::stats(s)).collect();
    ok_json(json!({ "model_stats": stats }))
}

/// Every loaded version's statistics (Triton: no version named means all of them).
async fn model_stats(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    state.model(&model, "")?;
    let stats: Vec<Value> = state.versions(&model).iter().map(|s| metadata::stats(s)).collect();
    ok_json(json!({ "model_stats": stats }))
}

async fn model_stats_v(State(state): State<AppState>, Path((model, version)): Path<(String, String)>) -> Answer {
    ok_json(json!({ "model_stats": [metadata::stats(&*state.model(&model, &version)?)] }))
}

/// The body, refused beyond the limit (announced or actual) with Triton's 400 and words,
/// which name its flag; corral takes it too.
/// With a `slot`, the body's JSON header, and its tensors as the slot holds them.
async fn body_bytes(
    state: &ServerState,
    headers: &HeaderMap,
    body: Body,
    slot: Option<crate::slab::Slot>,
) -> Result<(Bytes, Option<Bytes>), CallError> {
    let limit = state.body_limit;
    // A header of length 0 is a raw binary request: its body is one input's bytes (Triton:
    // EVBufferToRawInput), else the JSON header and its binary tensors (EVBufferToJson).
    let header_len = headers.get(HEADER_LEN).and_then(|v| v.to_str().ok()?.trim().parse::<i64>().ok());
    let raw = header_len == Some(0);
    let too_large = |size: String| {
        if raw { triton::raw_input_too_large(&size, limit) } else { triton::body_too_large(&size, limit) }
    };
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(size) = announced.filter(|&n| n > limit as u64) {
        // Read (and drop) a body up to twice the limit first, so the client hears the answer.
        crate::body::drain(body, limit.saturating_mul(2)).await;
        return Err(too_large(size.to_string()));
    }
    // Binary tensors start after the JSON header: placed aligned, they are read in place.
    let tensors_at = header_len.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let too_large = || too_large(format!("more than {limit}"));
    if let Some(mut slot) = slot {
        let header =
            crate::body::collect_into(body, tensors_at, |data| slot.write(data)).await.map_err(|_| too_large())?;
        return Ok((header, Some(slot.freeze().ok_or_else(too_large)?)));
    }
    let body = crate::body::collect(body, limit, announced.map(|n| n as usize), tensors_at).await;
    Ok((body.map_err(|_| too_large())?, None))
}

async fn infer(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    Extension(ReadBody(body)): Extension<ReadBody>,
    tensors: Option<Extension<Tensors>>,
) -> Answer {
    let tensors = tensors.map(|Extension(Tensors(t))| t);
    infer_compressed(state, model, String::new(), Read { headers, body, tensors }).await
}

async fn infer_v(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    Extension(ReadBody(body)): Extension<ReadBody>,
    tensors: Option<Extension<Tensors>>,
) -> Answer {
    let tensors = tensors.map(|Extension(Tensors(t))| t);
    infer_compressed(state, model, version, Read { headers, body, tensors }).await
}

/// What an inference call brought: its headers, its body (the JSON header alone when the
/// tensors were read apart) and its tensors read into a batch's slot, if they were.
struct Read {
    headers: HeaderMap,
    body: Bytes,
    tensors: Option<Bytes>,
}

/// An inference, its answer compressed when `Accept-Encoding` asks (errors never are).
// Triton: http_server.cc, InferRequestClass::FinalizeResponse compresses inference answers only.
async fn infer_compressed(state: AppState, model: String, version: String, read: Read) -> Answer {
    let encoding = compress::accepted(&read.headers);
    let response = infer_at(state, model, version, read).await?;
    Ok(compress::answer(response, encoding).await)
}

const HEADER_LEN: &str = "inference-header-content-length";

/// Triton's raw binary request (`docs/protocol/extension_binary_data.md`, "Raw Binary
/// Request"; `infer_request.cc`, `Normalize`): a model of one input takes the whole body as
/// that input, its datatype and shape from the configuration (a batching model's batch is 1;
/// one variable dimension is what the bytes make it; a BYTES input is one element, the body),
/// and every output comes back binary. Errors are Triton's.
fn raw_request(served: &Served, body: Bytes) -> Result<call::Request, CallError> {
    let model = &served.name;
    let inputs = metadata::inputs(served);
    let [input] = &inputs[..] else {
        return Err(triton::raw_input_count(model, inputs.len()));
    };
    let batch: &[i64] = if served.config.max_batch_size > 0 { &[1] } else { &[] };
    let mut shape: Vec<i64> = batch.iter().chain(metadata::dims(served, input)).copied().collect();
    let variable: Vec<usize> = (0..shape.len()).filter(|&i| shape[i] < 0).collect();
    if variable.len() > 1 {
        return Err(triton::raw_shape_ambiguous(&input.name));
    }
    let data = match input.datatype.size() {
        None => {
            if !variable.is_empty() || shape.iter().product::<i64>() != 1 {
                return Err(triton::raw_bytes_shape(&input.name));
            }
            TensorData::Bytes(Strings::from_elements([&body[..]]))
        }
        Some(size) => {
            if let Some(&at) = variable.first() {
                let others: i64 = shape.iter().enumerate().filter(|&(i, _)| i != at).map(|(_, &d)| d).product();
                shape[at] = body.len() as i64 / others.max(1) / size as i64;
            }
            let count = shape.iter().product::<i64>().max(0) as usize;
            let expected = count.saturating_mul(size);
            if expected != body.len() {
                // Triton names the input `raw_input` here (its map key).
                return Err(triton::byte_size_mismatch(None, "raw_input", model, expected, body.len()));
            }
            TensorData::from_wire_shared(input.datatype, body, count)
                .map_err(|e| CallError::bad_request(e.to_string()))?
        }
    };
    let shape = shape.iter().map(|&d| d as usize).collect();
    Ok(call::Request {
        inputs: vec![corral_engine::Tensor::new(input.name.clone(), shape, data)],
        binary_output: true,
        ..Default::default()
    })
}

/// A REST inference: the body decoded (binary or JSON, or Triton's raw binary request), the
/// protocol-neutral call run, its outputs encoded; REST's own part is only these two.
/// `tensors`: the binary part, when it was read apart from the JSON header `body`.
async fn infer_at(state: AppState, model: String, version: String, read: Read) -> Answer {
    let Read { headers, body, tensors } = read;
    let length = body.len() + tensors.as_ref().map_or(0, Bytes::len);
    let header_len = headers.get(HEADER_LEN).map(|v| v.to_str().unwrap_or_default());
    let decode = |served: &Served| {
        if served.config.decoupled {
            return Err(triton::http_decoupled());
        }
        let header_len = match header_len {
            None => None,
            Some(text) => {
                // Triton reads it with std::stoi: an int32, words of their own past one.
                let n: i64 = text.trim().parse().map_err(|_| triton::header_length_unparsable(text))?;
                if i32::try_from(n).is_err() {
                    return Err(triton::header_length_past_int(text));
                }
                if n < 0 || n > length as i64 {
                    return Err(triton::header_length_out_of_range(n, length));
                }
                Some(n as usize)
            }
        };
        // A header of length 0 (or an empty body without one) is Triton's raw binary request:
        // the whole body is the one input's bytes.
        if let Some(tensors) = &tensors {
            codec::decode_parts(&body, tensors, &served.name, state.body_limit)
        } else if header_len == Some(0) || (header_len.is_none() && body.is_empty()) {
            raw_request(served, body.clone())
        } else {
            codec::decode(&body, header_len, &served.name, state.body_limit)
        }
    };
    let encode = |served: &Served, id: Option<&str>, outputs: Vec<call::Output>| {
        let encoded = codec::encode(&served.name, &served.version, id, &outputs);
        let mut response = Response::new(crate::body::Frames::new(encoded.parts).into_body());
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
    };
    call::infer(&state, &model, &version, decode, encode).await
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

/// A register with no region in the path (Triton's URL pattern takes it, the name empty).
async fn shm_register_unnamed(State(state): State<AppState>) -> Answer {
    state.shm.check_allowed()?;
    Err(triton::shm_unnamed())
}

async fn shm_register(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(ReadBody(body)): Extension<ReadBody>,
) -> Answer {
    let value = json_body(&body)?;
    // Wrong types are Triton's JSON errors (500).
    let key = match value.get("key") {
        None => return Err(triton::shm_register_missing("key")),
        Some(key) => key.as_str().ok_or_else(|| triton::json_type("string"))?,
    };
    let number = |field: &str| match value.get(field) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| triton::json_type("unsigned-integer")),
    };
    let offset = number("offset")?.unwrap_or(0);
    let byte_size = number("byte_size")?.ok_or_else(|| triton::shm_register_missing("byte_size"))?;
    state.shm.register(&name, key, offset, byte_size)?;
    Ok(StatusCode::OK.into_response())
}

async fn shm_unregister_all(State(state): State<AppState>) -> Answer {
    state.shm.unregister(None)?;
    Ok(StatusCode::OK.into_response())
}

async fn shm_unregister(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    state.shm.unregister(Some(&name))?;
    Ok(StatusCode::OK.into_response())
}

/// A request body as JSON; a body that does not parse is Triton's 500 (its JSON errors are
/// INTERNAL).
fn json_body(body: &[u8]) -> Result<Value, CallError> {
    serde_json::from_slice(body).map_err(|e| triton::unparsable_json(&e))
}

// Triton built without GPUs (http_server.cc, HandleCudaSharedMemory): status lists no region,
// unregister succeeds, register is refused.
async fn cuda_shm_status_all() -> Answer {
    ok_json(json!([]))
}

async fn cuda_shm_status(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    crate::shm::cuda_status(&state.shm, Some(&name))?;
    ok_json(json!([]))
}

async fn cuda_shm_register_unnamed(State(state): State<AppState>) -> Answer {
    state.shm.check_allowed()?;
    Err(triton::cuda_register(""))
}

async fn cuda_shm_register(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    state.shm.check_allowed()?;
    Err(triton::cuda_register(&name))
}

async fn cuda_shm_unregister(State(state): State<AppState>) -> Answer {
    state.shm.check_allowed()?;
    Ok(StatusCode::OK.into_response())
}

async fn index(State(state): State<AppState>, Extension(ReadBody(body)): Extension<ReadBody>) -> Answer {
    // Triton parses the body with no depth limit, then reads `ready` (a deeply nested value
    // is a 400 for not being a bool, not a 500): members are kept as text, which serde_json
    // skips without recursing, and only `ready` is read.
    let ready_only = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        let members: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
            serde_json::from_slice(&body).map_err(|e| triton::unparsable_json(&e))?;
        match members.get("ready") {
            None => false,
            Some(ready) => serde_json::from_str::<bool>(ready.get()).map_err(|_| triton::ready_not_boolean())?,
        }
    };
    let entries: Vec<Value> = state
        .index()
        .into_iter()
        .filter(|e| !ready_only || e.state == Some("READY"))
        .map(|e| {
            let mut entry = json!({ "name": e.name });
            if let Some(version) = e.version {
                entry["version"] = json!(version);
            }
            if let Some(state) = e.state {
                entry["state"] = json!(state);
            }
            if !e.reason.is_empty() {
                entry["reason"] = json!(e.reason);
            }
            entry
        })
        .collect();
    ok_json(Value::Array(entries))
}

/// Triton's load: an empty body, or `{"parameters": {"config": "<model config JSON>",
/// "file:1/model.onnx": "<base64>"}}`.
async fn load(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Extension(ReadBody(body)): Extension<ReadBody>,
) -> Answer {
    let mut over = crate::overrides::LoadOverride::default();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let value = json_body(&body)?;
        let parameters = match value.get("parameters") {
            None | Some(Value::Null) => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => return Err(triton::json_type("object")),
        };
        // Triton's answers (http_server.cc, HandleRepositoryControl): values are strings,
        // `file:` ones base64; any other key is its 500.
        for (key, value) in parameters.into_iter().flatten() {
            let text = value.as_str().ok_or_else(|| triton::json_type("string"))?;
            if key == "config" {
                over.config(text);
            } else if key.starts_with("file:") {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| CallError::bad_request(format!("Unable to decode '{key}' as base64: {e}")))?;
                over.file(key, bytes);
            } else {
                return Err(triton::unknown_parameter());
            }
        }
    }
    state.request_load(&model, over).await?;
    Ok(StatusCode::OK.into_response())
}

async fn unload(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    state.request_unload(&model).await?;
    Ok(StatusCode::OK.into_response())
}

// Triton's trace extension (http_server.cc, HandleTrace): the server's setting, or a loaded
// model's.
async fn trace_get(State(state): State<AppState>) -> Answer {
    ok_json(state.trace.get(None))
}

async fn trace_post(State(state): State<AppState>, Extension(ReadBody(body)): Extension<ReadBody>) -> Answer {
    let update = crate::trace::Update::from_json(&json_body(&body)?)?;
    ok_json(state.trace.update(None, &update)?)
}

async fn model_trace_get(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    state.model(&model, "")?;
    ok_json(state.trace.get(Some(&model)))
}

async fn model_trace_post(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Extension(ReadBody(body)): Extension<ReadBody>,
) -> Answer {
    state.model(&model, "")?;
    let update = crate::trace::Update::from_json(&json_body(&body)?)?;
    ok_json(state.trace.update(Some(&model), &update)?)
}
