//! One ModelInfer call, as the unary RPC and each message of a stream run it: the request
//! decoded into the protocol-neutral `call::Request` (inputs, outputs, sequence parameters),
//! `call::infer` run, its outputs encoded (or a stream's error message).

use tonic::Status;

use super::{
    decode::{DecodedInputs, decode_inputs, shm_reference},
    pb,
    status::status,
};
use crate::{
    call,
    error::CallError,
    sequence::{SequenceId, SequenceParams},
    state::ServerState,
    triton,
};

pub(super) fn stream_error(
    message: &str,
    id: String,
    model_name: String,
    model_version: String,
) -> pb::ModelStreamInferResponse {
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

/// One ModelInfer call, as the unary RPC and each message of a stream run it: the request
/// decoded, the protocol-neutral call run, its outputs encoded (gRPC's own part is only these
/// two).
pub(super) async fn infer_one(
    state: &ServerState,
    mut r: pb::ModelInferRequest,
) -> Result<pb::ModelInferResponse, Status> {
    let (name, version) = (r.model_name.clone(), std::mem::take(&mut r.model_version));
    let decode = |served: &crate::state::Served| {
        if served.config.decoupled {
            return Err(triton::grpc_unary_decoupled());
        }
        decode_request(&mut r)
    };
    let encode = |served: &crate::state::Served, id: Option<&str>, outputs: Vec<call::Output>| {
        Ok(encode_answer(served, id.unwrap_or_default(), outputs))
    };
    call::infer(state, &name, &version, decode, encode).await.map_err(status)
}

/// One request of a stream to a decoupled model: each response sent on `answers` as the model
/// sends it, marked with `triton_final_response`, tagged with the request's id; the bare final
/// flag as an empty response only when the request's `triton_enable_empty_final_response` asks.
pub(super) async fn infer_decoupled(
    state: &ServerState,
    mut r: pb::ModelInferRequest,
    answers: &tokio::sync::mpsc::Sender<Result<pb::ModelStreamInferResponse, Status>>,
) {
    use pb::infer_parameter::ParameterChoice;
    let (name, version) = (r.model_name.clone(), std::mem::take(&mut r.model_version));
    let id = r.id.clone();
    let (model_name, model_version) = (name.clone(), version.clone());
    let empty_final = matches!(
        r.parameters.get("triton_enable_empty_final_response").and_then(|p| p.parameter_choice.as_ref()),
        Some(ParameterChoice::BoolParam(true))
    );
    let final_flag = |last: bool| {
        let flag = pb::InferParameter { parameter_choice: Some(ParameterChoice::BoolParam(last)) };
        std::collections::HashMap::from([("triton_final_response".to_owned(), flag)])
    };
    let decode = |_: &crate::state::Served| decode_request(&mut r);
    let encode = |served: &crate::state::Served, id: Option<&str>, outputs: Vec<call::Output>| {
        Ok(encode_answer(served, id.unwrap_or_default(), outputs))
    };
    let error_answer = |error: CallError, last: bool| {
        let mut answer = stream_error(&error.message, id.clone(), model_name.clone(), model_version.clone());
        if let Some(response) = &mut answer.infer_response {
            response.parameters = final_flag(last);
        }
        answer
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let producer = async move { call::infer_stream(state, &name, &version, decode, encode, &tx).await };
    let consumer = async {
        while let Some(item) = rx.recv().await {
            let answer = match item {
                call::Streamed::Response(mut response, last) => {
                    response.parameters = final_flag(last);
                    pb::ModelStreamInferResponse { error_message: String::new(), infer_response: Some(response) }
                }
                call::Streamed::EmptyFinal if empty_final => {
                    let response = pb::ModelInferResponse {
                        id: id.clone(),
                        model_name: model_name.clone(),
                        model_version: model_version.clone(),
                        parameters: final_flag(true),
                        ..Default::default()
                    };
                    pb::ModelStreamInferResponse { error_message: String::new(), infer_response: Some(response) }
                }
                call::Streamed::EmptyFinal => continue,
                // Error responses carry the final flag too (Triton's stream_infer_handler.cc).
                call::Streamed::Failed(error, last) => error_answer(error, last),
                call::Streamed::Refused(error) => error_answer(error, true),
            };
            if answers.send(Ok(answer)).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(producer, consumer);
}

/// A ModelInfer request as the call takes it (its model named apart).
fn decode_request(r: &mut pb::ModelInferRequest) -> Result<call::Request, CallError> {
    let DecodedInputs { tensors, shm: shm_inputs, bytes_error } = decode_inputs(r).map_err(CallError::bad_request)?;
    let outputs = r
        .outputs
        .iter()
        .map(|o| {
            let shm = shm_reference(&o.parameters, &format!("output '{}'", o.name)).map_err(CallError::bad_request)?;
            use pb::infer_parameter::ParameterChoice;
            let class_count = match o.parameters.get("classification").and_then(|p| p.parameter_choice.as_ref()) {
                None => 0,
                Some(ParameterChoice::Int64Param(k)) if *k >= 0 => *k as usize,
                Some(ParameterChoice::Uint64Param(k)) => *k as usize,
                Some(_) => {
                    return Err(CallError::bad_request(format!(
                        "output `{}`: classification must be a whole number 0 or more",
                        o.name
                    )));
                }
            };
            Ok(call::WantedOutput { name: o.name.clone(), binary: None, shm, class_count })
        })
        .collect::<Result<Vec<_>, CallError>>()?;
    let sequence = sequence_params(&r.parameters).map_err(CallError::bad_request)?;
    let id = std::mem::take(&mut r.id);
    Ok(call::Request { id: Some(id), inputs: tensors, shm_inputs, outputs, binary_output: true, sequence, bytes_error })
}

/// The call's outputs as a ModelInferResponse: every tensor in `raw_output_contents`, an
/// output in shared memory as its region's parameters (its place kept with empty bytes).
fn encode_answer(served: &crate::state::Served, id: &str, outputs: Vec<call::Output>) -> pb::ModelInferResponse {
    use pb::infer_parameter::ParameterChoice;
    let mut tensors = Vec::with_capacity(outputs.len());
    let mut raw = Vec::with_capacity(outputs.len());
    for call::Output { tensor, form } in outputs {
        let mut parameters = std::collections::HashMap::new();
        match form {
            call::OutputForm::Shm(at, written) => {
                let param = |choice| pb::InferParameter { parameter_choice: Some(choice) };
                parameters.insert("shared_memory_region".to_owned(), param(ParameterChoice::StringParam(at.region)));
                parameters
                    .insert("shared_memory_offset".to_owned(), param(ParameterChoice::Int64Param(at.offset as i64)));
                parameters
                    .insert("shared_memory_byte_size".to_owned(), param(ParameterChoice::Int64Param(written as i64)));
                // Clients index raw_output_contents by output position: keep the places.
                raw.push(bytes::Bytes::new());
            }
            _ => raw.push(crate::body::tensor_bytes(&tensor.data)),
        }
        tensors.push(pb::model_infer_response::InferOutputTensor {
            name: tensor.name.clone(),
            datatype: tensor.datatype().kserve_name().to_owned(),
            shape: tensor.shape.iter().map(|&d| d as i64).collect(),
            parameters,
            contents: None,
        });
    }
    pb::ModelInferResponse {
        model_name: served.name.clone(),
        model_version: served.version.clone(),
        id: id.to_owned(),
        parameters: Default::default(),
        outputs: tensors,
        raw_output_contents: raw,
    }
}
