//! Triton's words: every message and status of the server that imitates Triton Inference
//! Server, one small function each, with the Triton source it follows in its doc, so that
//! the wording is checked against Triton in one place (the `tidy` test checks that no other
//! file of the server writes one). Clients and tests written for Triton match these texts.
//!
//! Sources are files of triton-inference-server/server (`http_server.cc`,
//! `grpc/infer_handler.cc`, …); `core` names its core library (`core infer_request.cc`) and
//! `common` its common library (`common triton_json.h`). Where corral says more than Triton,
//! its detail comes after Triton's words and is an argument of the function. A function
//! returns a [`CallError`] (Triton's status and words), or a `String` where the caller wraps
//! the words itself (a repository error, a gRPC decoding error).

use std::fmt::Display;

use corral_engine::DataType;
use corral_runtime::InferError;

use crate::error::{CallError, ErrorKind};

fn bad(message: String) -> CallError {
    CallError::bad_request(message)
}

/// `[a,b]`: a list of dimensions as Triton writes a shape.
fn dims<T: Display>(dims: &[T]) -> String {
    format!("[{}]", dims.iter().map(T::to_string).collect::<Vec<_>>().join(","))
}

/// `['a','b']`: a list of names as Triton writes it.
fn names(names: &[&str]) -> String {
    format!("[{}]", names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(","))
}

// BLS (a model's calls to other models).

/// Triton: python_backend request_executor.cc, `RequestExecutor::Infer` (a target that is not
/// ready; an unknown model reads the same).
pub fn bls_not_ready(model: &str) -> CallError {
    CallError::new(
        ErrorKind::NotFound,
        format!("Failed for execute the inference request. Model '{model}' is not ready."),
    )
}

/// Triton: python_backend request_executor.cc, `RequestExecutor::Infer`: an error before the
/// target ran, which python_backend prefixes (and whose code it drops for INTERNAL).
pub fn bls_not_run(target: &str, message: &str) -> String {
    format!("Model {target} - Error when running inference: {message}")
}

/// Triton: python_backend request_executor.cc: `exec()` without `decoupled=True` on a
/// decoupled model (the stray quote at the end is python_backend's).
pub fn bls_decoupled(model: &str) -> String {
    format!(
        "Model {model} is using the decoupled. The current BLS request call doesn't support models using the decoupled transaction policy. Please use 'decoupled=True' argument to the 'exec' or 'async_exec' calls for decoupled models.'"
    )
}

/// Triton: http_server.cc, `CheckTransactionPolicy`: HTTP's infer on a decoupled model.
pub fn http_decoupled() -> CallError {
    CallError::new(ErrorKind::Unsupported, "HTTP end point doesn't support models with decoupled transaction policy")
}

/// Triton: grpc/infer_handler.cc: the unary ModelInfer on a decoupled model.
pub fn grpc_unary_decoupled() -> CallError {
    CallError::new(ErrorKind::Unsupported, "ModelInfer RPC doesn't support models with decoupled transaction policy")
}

// Model lookup.

/// Triton: core model_repository_manager.cc, FindModelIdentifier.
pub fn unknown_model(name: &str) -> CallError {
    CallError::new(ErrorKind::NotFound, format!("Request for unknown model: '{name}' is not found"))
}

/// Triton: core model_lifecycle.cc, GetModel (no version ready); corral's reason in parentheses.
pub fn no_available_versions(name: &str, why: &str) -> CallError {
    CallError::new(
        ErrorKind::NotFound,
        format!("Request for unknown model: '{name}' has no available versions ({why})"),
    )
}

/// Triton: core model_lifecycle.cc, GetModel (a version that is not loaded); corral's detail in parentheses.
pub fn version_not_found(name: &str, version: &str, detail: &str) -> CallError {
    CallError::new(
        ErrorKind::NotFound,
        format!("Request for unknown model: '{name}' version {version} is not found ({detail})"),
    )
}

/// Triton: core model_lifecycle.cc, GetModel (a version gone under the call); corral's reason in parentheses.
pub fn version_unavailable(name: &str, version: &str, why: &str) -> CallError {
    CallError::new(
        ErrorKind::NotFound,
        format!("Request for unknown model: '{name}' version {version} has no available versions ({why})"),
    )
}

/// Triton: common.cc, GetModelVersionFromString.
pub fn bad_version(version: &str) -> CallError {
    bad(format!("failed to get model version from specified version string '{version}'"))
}

/// Triton: http_server.cc, HandleModelReady (400: a model or version not loaded is not ready).
pub fn model_version_not_ready() -> CallError {
    CallError::bad_request("Model version not ready")
}

/// A runtime error as a call's. Here, not in `error.rs` (which this module sits on), because a
/// model unloaded under a call is Triton's unknown model (core model_lifecycle.cc, GetModel).
impl From<InferError> for CallError {
    fn from(error: InferError) -> CallError {
        let kind = match &error {
            InferError::Input { .. } => ErrorKind::BadRequest,
            InferError::Unloaded { model } => return no_available_versions(model, "unloaded"),
            InferError::Timeout { .. } | InferError::QueueFull { .. } => ErrorKind::Unavailable,
            InferError::Engine { .. } | InferError::Internal(_) => ErrorKind::Internal,
        };
        CallError::new(kind, error.to_string())
    }
}

// Model control and the repository.

/// Triton: core model_repository_manager.cc, LoadUnloadModel (any mode but explicit: UNAVAILABLE).
pub fn control_disabled() -> CallError {
    CallError::new(ErrorKind::Unavailable, "explicit model load / unload is not allowed if polling is enabled")
}

/// Triton: core model_repository_manager.cc, ValidateModelName.
pub fn empty_model_name() -> CallError {
    CallError::bad_request("Model name cannot be empty. Please enter a valid name to deploy.")
}

/// Triton: core model_repository_manager.cc, ValidateModelName.
pub fn path_traversal(name: &str) -> CallError {
    bad(format!("invalid model name '{name}', model name must not contain path traversal characters"))
}

/// Triton: core model_repository_manager.cc, Poll (its log line); `detail` is corral's reason.
pub fn poll_failed(name: &str, detail: &str) -> String {
    format!("Poll failed for model directory '{name}': {detail}")
}

/// Triton: core model_repository_manager.cc, LoadUnloadModel (a failed poll: INTERNAL); corral's detail after it.
pub fn load_poll_failed(name: &str, detail: &str) -> CallError {
    CallError::new(
        ErrorKind::Internal,
        format!("failed to load '{name}', failed to poll from model repository: {detail}"),
    )
}

/// Triton: core model_repository_manager.cc, LoadUnloadModels, with model_lifecycle.cc OnLoadComplete's state.
pub fn version_load_failed(name: &str, version: u64, reason: &str) -> CallError {
    bad(format!("load failed for model '{name}': version {version} is at UNAVAILABLE state: Internal: {reason};\n"))
}

/// Triton: core model_repository_manager.cc, Create, as main.cc reports it (`creating server`); corral's hint after it.
pub fn all_models_failed(hint: &str) -> String {
    format!("creating server: Internal - failed to load all models\n{hint}")
}

/// Triton: core model_repository_manager.cc, LocalizeRepoAgent.
pub fn override_needs_config() -> String {
    "Load parameter 'config' must be specified for model file override".to_owned()
}

/// Triton: core model_repository_manager.cc, InitializeModelInfo; `detail` is corral's reason.
pub fn invalid_config_override(detail: &str) -> String {
    format!("Invalid config override: {detail}")
}

/// Triton: core model_repository_manager.cc, LocalizeRepoAgent.
pub fn file_outside_model(path: &str) -> String {
    format!("Invalid file parameter 'file:{path}' with normalized path '{path}' must stay within model directory.")
}

/// Triton: http_server.cc, HandleRepositoryIndex.
pub fn ready_not_boolean() -> CallError {
    CallError::bad_request("Invalid value for 'ready': expected a boolean")
}

/// Triton: http_server.cc, HandleRepositoryControl (a load parameter neither `config` nor `file:`: 500).
pub fn unknown_parameter() -> CallError {
    CallError::new(ErrorKind::Internal, "unexpected error on creating Triton parameter")
}

/// Triton: grpc_server.cc, RegisterRepositoryModelLoad; `expected` is the parameter's field.
pub fn load_parameter_type(key: &str, expected: &str) -> CallError {
    bad(format!("invalid value type for load parameter '{key}', expected {expected}."))
}

/// Triton: core model_repository_manager.cc, CreateModelInfo (a load parameter that is neither
/// `config` nor `file:`, here a model's `load_model(files=...)` key).
pub fn unrecognized_load_parameter(key: &str) -> CallError {
    bad(format!("Unrecognized load parameter '{key}' with type 'BYTES'"))
}

/// Triton: grpc_server.cc, RegisterRepositoryModelLoad.
pub fn unknown_load_parameter(key: &str) -> CallError {
    bad(format!("unrecognized load parameter '{key}'."))
}

/// Triton: http_server.cc, RespondIfRestricted (403): an API of a category
/// `--http-restricted-api` restricts, called without its header and value.
pub fn restricted_api(header: &str) -> CallError {
    CallError::new(ErrorKind::Forbidden, format!("This API is restricted, expecting header '{header}'"))
}

/// Triton: grpc/grpc_server.cc, CommonCallData::Execute (UNAVAILABLE): a protocol
/// `--grpc-restricted-protocol` restricts, called without its header (`triton-grpc-protocol-`
/// and the key) and value.
pub fn restricted_protocol(header: &str) -> String {
    format!("This protocol is restricted, expecting header '{header}'")
}

// Request checks: the model's inputs and outputs, in Triton's order (validate.rs).

/// Triton: core infer_request.h, LogRequest: the `[request id: <id>] ` before a request check's words.
pub fn request_prefix(id: Option<&str>) -> String {
    match id.filter(|id| !id.is_empty()) {
        Some(id) => format!("[request id: {id}] "),
        None => "[request id: <id_unknown>] ".to_owned(),
    }
}

/// Triton: core infer_request.cc, AddOriginalInput.
pub fn duplicate_input(id: Option<&str>, input: &str) -> CallError {
    bad(format!("{}input '{input}' already exists in request", request_prefix(id)))
}

/// Triton: core infer_request.cc, AddOriginalRequestedOutput.
pub fn duplicate_output(id: Option<&str>, output: &str) -> CallError {
    bad(format!("{}output '{output}' already exists in request", request_prefix(id)))
}

/// Triton: core model.cc, GetOutput (no request prefix).
pub fn unexpected_output(output: &str, model: &str) -> CallError {
    bad(format!("unexpected inference output '{output}' for model '{model}'"))
}

/// Triton: core infer_request.cc, ValidateRequestInputs.
pub fn input_count(id: Option<&str>, model: &str, expected: usize, given: &[&str], missing: &[&str]) -> CallError {
    bad(format!(
        "{}expected {expected} inputs but got {} inputs for model '{model}'. Got input(s) {}, but missing required input(s) {}. Please provide all required input(s).",
        request_prefix(id),
        given.len(),
        names(given),
        names(missing)
    ))
}

/// Triton: core infer_request.cc, ValidateRequestInputs, for a model with optional inputs:
/// between the required count and all of them.
pub fn input_count_between(
    id: Option<&str>,
    model: &str,
    (required, all): (usize, usize),
    given: &[&str],
    missing: &[&str],
) -> CallError {
    bad(format!(
        "{}expected number of inputs between {required} and {all} but got {} inputs for model '{model}'. Got input(s) {}, but missing required input(s) {}. Please provide all required input(s).",
        request_prefix(id),
        given.len(),
        names(given),
        names(missing)
    ))
}

/// Triton: core infer_request.cc, ValidateBytesInputs: a BYTES input whose bytes hold fewer
/// elements than its shape (`got` of them).
pub fn bytes_fewer(id: Option<&str>, input: &str, model: &str, expected: usize, got: usize) -> CallError {
    bad(format!(
        "{}expected {expected} string elements for inference input '{input}' for model '{model}', got {got}",
        request_prefix(id)
    ))
}

/// Triton: core infer_request.cc, ValidateBytesInputs: more elements than the shape (it stops
/// at the first one past it, so says `expected + 1`).
pub fn bytes_more(id: Option<&str>, input: &str, model: &str, expected: usize) -> CallError {
    bad(format!(
        "{}unexpected number of string elements {} for inference input '{input}' for model '{model}', expecting {expected}",
        request_prefix(id),
        expected + 1
    ))
}

/// Triton: core infer_request.cc, ValidateBytesInputs: an element's length cut short.
pub fn bytes_indicator(id: Option<&str>, input: &str, model: &str, available: usize) -> CallError {
    bad(format!(
        "{}incomplete string length indicator for inference input '{input}' for model '{model}', expecting 4 bytes but only {available} bytes available. Please make sure the string length indicator is in one buffer.",
        request_prefix(id)
    ))
}

/// Triton: core scheduler_utils.cc, PolicyQueue::Enqueue (UNAVAILABLE): the dynamic batcher's
/// `default_queue_policy { max_queue_size }` reached.
pub fn queue_full(id: Option<&str>) -> CallError {
    CallError::new(ErrorKind::Unavailable, format!("{}Exceeds maximum queue size", request_prefix(id)))
}

/// Triton: http_server.cc, ParseJsonTritonParams: a request parameter of Triton's own prefix.
pub fn reserved_parameter_http() -> CallError {
    CallError::bad_request(
        "parameter keys starting with 'triton_' are reserved for Triton usage and should not be specified.",
    )
}

/// Triton: grpc/infer_handler.cc, SetInferenceRequestMetadata: the same over gRPC, which
/// names the `triton_` keys it takes (common.h, `TRITON_RESERVED_REQUEST_PARAMS`; corral
/// takes it and, serving no decoupled model, has nothing to do with it).
pub fn reserved_parameter_grpc() -> CallError {
    CallError::bad_request(
        "parameter keys starting with 'triton_' are reserved for Triton usage. Only the following keys starting with 'triton_' are allowed: triton_enable_empty_final_response",
    )
}

/// Triton: core model.cc, GetInput (no request prefix).
pub fn unexpected_input(input: &str, model: &str) -> CallError {
    bad(format!("unexpected inference input '{input}' for model '{model}'"))
}

/// Triton: core infer_request.cc, Normalize.
pub fn no_batch_dimension(id: Option<&str>, input: &str, model: &str) -> CallError {
    bad(format!("{}input '{input}' has no shape but model requires batch dimension for '{model}'", request_prefix(id)))
}

/// Triton: core infer_request.cc, Normalize.
pub fn batch_mismatch(id: Option<&str>, input: &str, model: &str) -> CallError {
    bad(format!("{}input '{input}' batch size does not match other inputs for '{model}'", request_prefix(id)))
}

/// Triton: core infer_request.cc, Normalize.
pub fn batch_too_large(id: Option<&str>, max_batch_size: usize, model: &str) -> CallError {
    bad(format!("{}inference request batch-size must be <= {max_batch_size} for '{model}'", request_prefix(id)))
}

/// Triton: core infer_request.cc, Normalize.
pub fn datatype_mismatch(id: Option<&str>, input: &str, model: &str, got: DataType, expected: DataType) -> CallError {
    bad(format!(
        "{}inference input '{input}' data-type is '{}', but model '{model}' expects '{}'",
        request_prefix(id),
        got.kserve_name(),
        expected.kserve_name()
    ))
}

/// Triton: core infer_request.cc, Normalize (its note when the model batches).
pub fn shape_mismatch(
    id: Option<&str>,
    input: &str,
    model: &str,
    expected: &[i64],
    got: &[usize],
    batching: bool,
) -> CallError {
    let note = if batching {
        "NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be prepended to each input shape. If you want to specify the full shape including the batch dim in your input dims config, try setting max_batch_size to zero. See the model configuration docs for more info on max_batch_size."
    } else {
        ""
    };
    bad(format!(
        "{}unexpected shape for input '{input}' for model '{model}'. Expected {}, got {}. {note}",
        request_prefix(id),
        dims(expected),
        dims(got)
    ))
}

/// Triton: core infer_request.cc, Normalize: an input whose bytes do not fill its shape.
pub fn byte_size_mismatch(id: Option<&str>, input: &str, model: &str, expected: usize, got: usize) -> CallError {
    bad(format!(
        "{}input byte size mismatch for input '{input}' for model '{model}'. Expected {expected}, got {got}",
        request_prefix(id)
    ))
}

/// Triton: core infer_request.cc, Normalize (a raw binary request to a model of `found` inputs).
pub fn raw_input_count(model: &str, found: usize) -> CallError {
    bad(format!(
        "{}Raw request must only have 1 input (found 1) to be deduced but got {found} inputs in '{model}' model configuration",
        request_prefix(None)
    ))
}

/// Triton: core infer_request.cc, Normalize (a raw binary request).
pub fn raw_shape_ambiguous(input: &str) -> CallError {
    bad(format!(
        "{}The shape of the raw input '{input}' can not be deduced because there are more than one variable-sized dimension",
        request_prefix(None)
    ))
}

/// Triton: core infer_request.cc, Normalize (a raw binary request).
pub fn raw_bytes_shape(input: &str) -> CallError {
    bad(format!("{}For BYTE datatype raw input '{input}', the model must have input shape [1]", request_prefix(None)))
}

// Bodies: HTTP, JSON and the gRPC codec.

/// Triton: http_server.cc, EVBufferToJson (400, naming its flag).
pub fn body_too_large(size: &str, limit: usize) -> CallError {
    CallError::new(
        ErrorKind::TooLarge,
        format!(
            "request JSON size of {size} bytes exceeds the maximum allowed input size of {limit} bytes. Use --http-max-input-size to increase the limit."
        ),
    )
}

/// Triton: http_server.cc, GetInferenceHeaderLength.
pub fn header_length_unparsable(text: &str) -> CallError {
    bad(format!("Unable to parse Inference-Header-Content-Length, got: {text}"))
}

/// Triton: http_server.cc, GetInferenceHeaderLength (`std::stoi`: a value past an int32).
pub fn header_length_past_int(text: &str) -> CallError {
    bad(format!(
        "Unable to parse Inference-Header-Content-Length, value is out of range [ -2147483648, 2147483647 ], got: {text}"
    ))
}

/// Triton: http_server.cc, GetInferenceHeaderLength.
pub fn header_length_out_of_range(length: i64, body_len: usize) -> CallError {
    bad(format!("inference header size should be in range (0, {body_len}), got: {length}"))
}

/// Triton: http_server.cc, EVBufferToRawInput: a raw binary request's body past the limit.
pub fn raw_input_too_large(size: &str, limit: usize) -> CallError {
    CallError::new(
        ErrorKind::TooLarge,
        format!(
            "Raw input has a byte_size ({size} bytes) that exceeds the maximum allowed value of {limit} bytes. Use --http-max-input-size to increase the limit."
        ),
    )
}

/// Triton: http_server.cc, ParseJsonTritonIO: a JSON input whose elements would take more
/// bytes than the limit (BYTES: each element's length and 4 bytes).
pub fn json_input_too_large(input: &str, byte_size: u128, limit: usize) -> CallError {
    CallError::new(
        ErrorKind::TooLarge,
        format!(
            "JSON input '{input}' has a byte_size ({byte_size} bytes) that exceeds the maximum allowed value of {limit} bytes. Use --http-max-input-size to increase the limit."
        ),
    )
}

/// Triton: http_server.cc, ParseJsonTritonIO: an element count whose bytes overflow int64.
pub fn byte_size_overflow(input: &str, count: u64, type_size: usize) -> CallError {
    bad(format!(
        "byte size overflow for input '{input}': element count ({count}) * data type size ({type_size}) exceeds maximum allowed size ({})",
        i64::MAX
    ))
}

/// Triton: http_server.cc, its JSON errors are INTERNAL (500); `detail` is the reader's words.
pub fn json_error(detail: impl Into<String>) -> CallError {
    CallError::new(ErrorKind::Internal, detail)
}

/// Triton: common triton_json.h, Parse (through http_server.cc, EVRequestToJson); the offset counts from 0.
pub fn unparsable_json(error: &serde_json::Error) -> CallError {
    json_error(format!("failed to parse the request JSON buffer: {error} at {}", error.column().saturating_sub(1)))
}

/// Triton: common triton_json.h, its typed accessors (`attempt to access JSON non-string as string`).
pub fn json_type(kind: &str) -> CallError {
    json_error(format!("attempt to access JSON non-{kind} as {kind}"))
}

/// Triton: common triton_json.h, MemberAs… of a member that is not there.
pub fn missing_member(member: &str) -> CallError {
    json_error(format!("attempt to access non-existing object member '{member}'"))
}

/// Triton: http_server.cc, ParseJsonTritonIO: a field's reader error after its name, status kept.
pub fn unable_to_parse(field: &str, error: CallError) -> CallError {
    CallError::new(error.kind, format!("Unable to parse '{field}': {}", error.message))
}

/// Triton: http_server.cc, ParseJsonTritonIO (GetElementCount's overflow check).
pub fn element_count_overflow(input: &str, shape: &[usize]) -> CallError {
    bad(format!(
        "invalid shape for input '{input}': shape {} causes total element count to exceed maximum size of 9223372036854775807",
        dims(shape)
    ))
}

/// Triton: http_server.cc, ValidateInputContentType; `set` names the fields given, in its words.
pub fn one_data_source(set: &[&str]) -> CallError {
    let set = if set.is_empty() { "no field is set".to_owned() } else { format!("set {}", set.join(" ")) };
    bad(format!(
        "Input must set only one of the following fields: 'data', 'binary_data_size' in 'parameters', 'shared_memory_region' in 'parameters'. But {set}"
    ))
}

/// Triton: http_server.cc, ParseJsonTritonIO.
pub fn missing_binary_bytes(input: &str, model: &str, missing: usize) -> CallError {
    bad(format!("unexpected size for input '{input}', expecting {missing} additional bytes for model '{model}'"))
}

/// Triton: http_server.cc, ParseJsonTritonIO.
pub fn surplus_binary(model: &str) -> CallError {
    bad(format!("unexpected additional input data for model '{model}'"))
}

/// Triton: http_server.cc, ValidateOutputParameter (`other` is `classification` or `binary_data`).
pub fn output_shm_and(other: &str) -> CallError {
    bad(format!("Output can't set both 'shared_memory_region' and '{other}'"))
}

/// Triton: http_server.cc, ReadDataFromJsonHelper (400; BYTES are checked unwrapped).
pub fn nesting_too_deep(limit: usize) -> CallError {
    bad(format!("JSON nesting depth exceeds maximum allowed limit ({limit})"))
}

/// Triton: http_server.cc, ReadDataFromJsonHelper (more values than the shape: 500).
pub fn data_too_many() -> CallError {
    json_error("Unable to parse 'data': Shape does not match true shape of 'data' field")
}

/// Triton: http_server.cc, ReadDataFromJson (fewer values than the shape: 500).
pub fn data_too_few() -> CallError {
    json_error("Failed to parse 'data' field: shape does not match true shape")
}

/// Triton: grpc/infer_handler.cc, InferGRPCToInput.
pub fn shm_input_has_contents(input: &str, model: &str) -> String {
    format!("unexpected 'content' provided when using shared memory for input tensor '{input}' for model '{model}'")
}

/// Triton: grpc/infer_handler.cc, InferGRPCToInput.
pub fn contents_with_raw(input: &str, model: &str) -> String {
    format!("contents field must not be specified when using raw_input_contents for '{input}' for model '{model}'")
}

/// Triton: grpc/infer_handler.cc, InferGRPCToInput.
pub fn missing_raw_input(input: &str, model: &str) -> String {
    format!("unable to find data for input tensor '{input}' for model '{model}' in request.")
}

/// Triton: grpc/infer_handler.cc, InferGRPCToInputHelper (`field` is the typed field given).
pub fn typed_contents_mismatch(input: &str, model: &str, field: &str, datatype: DataType) -> String {
    format!(
        "unexpected explicit tensor data for input tensor '{input}' for model '{model}' of type '{field}', expected datatype '{}'",
        datatype.kserve_name()
    )
}

// Shared memory (shm.rs).

/// Triton: common.h, kClientShmDisabledErrorStr (UNSUPPORTED: 501 / UNIMPLEMENTED).
pub fn shm_disabled() -> CallError {
    CallError::new(
        ErrorKind::Unsupported,
        "Client shared memory is disabled. Start the server with '--allow-client-shm=true' to enable.",
    )
}

/// Triton: http_server.cc, HandleSystemSharedMemory (`key` or `byte_size`).
pub fn shm_register_missing(field: &str) -> CallError {
    bad(format!("Shared memory register request has no '{field}' field"))
}

/// Triton: http_server.cc, HandleSystemSharedMemory.
pub fn shm_unnamed() -> CallError {
    CallError::bad_request("'region name' is necessary to register system shared memory region")
}

/// Triton: common.cc, ValidateSharedMemoryKey.
pub fn shm_invalid_key(name: &str, key: &str) -> CallError {
    bad(format!("cannot register shared memory region '{name}' - invalid shm key '{key}'"))
}

/// Triton: common.cc, ValidateSharedMemoryKey (`prefix`: kTritonSharedMemoryRegionPrefix).
pub fn shm_reserved_key(name: &str, key: &str, prefix: &str) -> CallError {
    bad(format!(
        "cannot register shared memory region '{name}' with key '{key}' as the key contains the reserved prefix '{prefix}'"
    ))
}

/// Triton: shared_memory_manager.cc, RegisterSystemSharedMemory (ALREADY_EXISTS).
pub fn shm_registered(name: &str) -> CallError {
    CallError::new(ErrorKind::AlreadyExists, format!("shared memory region '{name}' already in manager"))
}

/// Triton: shared_memory_manager.cc, OpenSharedMemoryRegion (500).
pub fn shm_unopenable(key: &str) -> CallError {
    CallError::new(ErrorKind::Internal, format!("Unable to open shared memory region: '{key}'"))
}

/// Triton: shared_memory_manager.cc, GetSharedMemoryRegionSize (500).
pub fn shm_unsized(key: &str) -> CallError {
    CallError::new(ErrorKind::Internal, format!("Invalid shared memory region: '{key}'"))
}

/// Triton: shared_memory_manager.cc, CheckSharedMemoryRegionSize.
pub fn shm_invalid_args(name: &str) -> CallError {
    bad(format!("failed to register shared memory region '{name}': invalid args"))
}

/// Triton: shared_memory_manager.cc, GetMemoryInfo (404).
pub fn shm_unknown_region(region: &str) -> CallError {
    CallError::new(ErrorKind::NotFound, format!("Unable to find shared memory region: '{region}'"))
}

/// Triton: shared_memory_manager.cc, GetMemoryInfo.
pub fn shm_overflow(region: &str, byte_size: u64, offset: u64) -> CallError {
    bad(format!(
        "Integer overflow detected: byte_size ({byte_size}) + offset ({offset}) exceeds maximum value ({}) for region '{region}'",
        usize::MAX
    ))
}

/// Triton: shared_memory_manager.cc, GetMemoryInfo.
pub fn shm_invalid_offset(region: &str) -> CallError {
    bad(format!("Invalid offset for shared memory region: '{region}'"))
}

/// Triton: shared_memory_manager.cc, GetMemoryInfo.
pub fn shm_invalid_end(region: &str) -> CallError {
    bad(format!("Invalid offset + byte size for shared memory region: '{region}'"))
}

/// Triton: http_server.cc, InferResponseAlloc; grpc/infer_handler.cc, ResponseAllocatorHelper (corral: 400).
pub fn shm_too_small(what: &str, byte_size: u64, needed: usize) -> CallError {
    bad(format!(
        "shared memory size specified with the request for {what} ({byte_size} bytes) should be at least {needed} bytes to hold the results"
    ))
}

/// Triton: shared_memory_manager.cc, GetStatus (404).
pub fn shm_status_unknown(name: &str) -> CallError {
    CallError::new(ErrorKind::NotFound, format!("Unable to find system shared memory region: '{name}'"))
}

/// Triton: shared_memory_manager.cc, GetStatus (a CUDA status of a system region: 404).
pub fn cuda_status_system(name: &str) -> CallError {
    CallError::new(
        ErrorKind::NotFound,
        format!("The region named '{name}' is registered as system shared memory, not CUDA shared memory"),
    )
}

/// Triton: shared_memory_manager.cc, GetStatus (404).
pub fn cuda_status_unknown(name: &str) -> CallError {
    CallError::new(ErrorKind::NotFound, format!("Unable to find cuda shared memory region: '{name}'"))
}

/// Triton: http_server.cc, HandleCudaSharedMemory (no GPUs): the name first, over REST.
pub fn cuda_register(name: &str) -> CallError {
    if name.is_empty() {
        return CallError::bad_request("'region name' is necessary to register cuda shared memory region");
    }
    cuda_register_grpc(name)
}

/// Triton: grpc_server.cc, RegisterCudaSharedMemoryRegister without GPUs: no name check over
/// gRPC, so an empty name is named empty.
pub fn cuda_register_grpc(name: &str) -> CallError {
    bad(format!("failed to register CUDA shared memory region: '{name}', GPUs not supported"))
}

// Classification.

/// Triton: classification.cc, TopkClassifications: more than 1,000,000 elements in a row.
pub fn class_too_large() -> CallError {
    CallError::bad_request("classification output tensor too large")
}

/// Triton: classification.cc, TopkClassifications.
pub fn class_unsupported(datatype: DataType) -> CallError {
    bad(format!("class result not available for output due to unsupported type '{datatype}'"))
}

// Compression.

/// Triton: http_server.cc, DecompressBuffer (501; the REST layer adds `Accept-Encoding`).
pub fn unsupported_compression() -> CallError {
    CallError::new(ErrorKind::Unsupported, "Unsupported compression type")
}

/// Triton: data_compressor.h, DecompressData (through http_server.cc, DecompressBuffer: 400).
pub fn decompressed_too_large(limit: usize) -> CallError {
    CallError::new(
        ErrorKind::TooLarge,
        format!(
            "Decompressed data size exceeds the maximum allowed value of {limit} bytes. Use --http-max-input-size to increase the limit."
        ),
    )
}

// Sequences.

/// Triton: core sequence_batch_scheduler.cc, Enqueue (one row per request).
pub fn sequence_batch_not_one(model: &str) -> CallError {
    bad(format!(
        "inference request to model '{model}' must specify batch-size 1 due to requirements of sequence batcher"
    ))
}

/// Triton: core sequence_utils.h.
pub fn sequence_without_id(model: &str) -> CallError {
    bad(format!("inference request to model '{model}' must specify a non-zero or non-empty correlation ID"))
}

/// Triton: core sequence_batch_scheduler.cc, Enqueue.
pub fn sequence_needs_start(id: impl Display, model: &str) -> CallError {
    bad(format!(
        "inference request for sequence {id} to model '{model}' must specify the START flag on the first request of the sequence"
    ))
}

// The trace extension.

/// Triton: http_server.cc, HandleTrace; grpc_server.cc, RegisterTrace (UNSUPPORTED).
pub fn trace_file_fixed() -> CallError {
    CallError::new(ErrorKind::Unsupported, "trace file location can not be updated through network protocol")
}

/// Triton: grpc_server.cc, RegisterTrace.
pub fn trace_one_value(name: &str) -> CallError {
    bad(format!("expect only 1 value for '{name}'"))
}

/// Triton: http_server.cc, HandleTrace; grpc_server.cc, RegisterTrace.
pub fn trace_off_alone() -> CallError {
    CallError::bad_request("Expect only one trace level 'OFF' is specified")
}

/// Triton: http_server.cc, HandleTrace; grpc_server.cc, RegisterTrace (`std::stoi` failed).
pub fn trace_unparsable(name: &str, text: &str) -> CallError {
    bad(format!("Unable to parse '{name}', got: {text}"))
}

/// Triton: http_server.cc, HandleTrace; grpc_server.cc, RegisterTrace.
pub fn trace_out_of_range(name: &str, min: i64, max: i64, text: &str) -> CallError {
    bad(format!("Unable to parse '{name}', value is out of range [ {min}, {max} ], got: {text}"))
}

/// Triton: http_server.cc, HandleTrace; grpc_server.cc, RegisterTrace (which puts a space after `got:`).
pub fn trace_count_below(name: &str, text: &str, grpc: bool) -> CallError {
    let space = if grpc { " " } else { "" };
    bad(format!("Unable to parse '{name}'. Expecting value >= -1, got:{space}{text}"))
}

/// Triton: tracer.cc, UpdateTraceSettingInternal, with TraceSetting's reason.
fn invalid_trace_setting(why: &str) -> CallError {
    bad(format!("Attempting to set invalid trace setting :{why}"))
}

/// Triton: tracer.cc, TraceSetting (a rate of 0).
pub fn trace_rate_zero() -> CallError {
    invalid_trace_setting("sample rate must be non-zero")
}

/// Triton: tracer.cc, TraceSetting (no `--trace-file`).
pub fn trace_file_missing() -> CallError {
    invalid_trace_setting("trace file name is not given")
}

/// Triton: tracer.cc, UpdateTraceSettingInternal (a count of 0: no reason given).
pub fn trace_count_zero() -> CallError {
    invalid_trace_setting("")
}
