//! One ModelInfer call, as the unary RPC and each message of a stream run it: sequence
//! parameters, decoding, the call, and the answer (or a stream's error message).

use tonic::Status;

use super::{
    decode::{DecodedInputs, decode_inputs, shm_reference},
    pb, status,
};
use crate::{
    codec,
    error::CallError,
    metadata,
    sequence::{SequenceId, SequenceParams},
    state::ServerState,
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

/// One ModelInfer call, as the unary RPC and each message of a stream run it.
pub(super) async fn infer_one(
    state: &ServerState,
    mut r: pb::ModelInferRequest,
) -> Result<pb::ModelInferResponse, Status> {
    let received = std::time::Instant::now();
    let served = state.model(&r.model_name, &r.model_version).map_err(status)?;
    let mut trace = state.trace(&served, received);
    let decoding = std::time::Instant::now();
    let DecodedInputs { mut tensors, shm: shm_inputs, bytes_error } =
        decode_inputs(&mut r).map_err(|e| status(state.refused(&served, CallError::bad_request(e))))?;
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
    if let Some(error) = bytes_error {
        return Err(status(state.refused(&served, error)));
    }
    let wanted = metadata::wanted_outputs(&served, &wanted, true).map_err(status)?;
    drop(r.raw_input_contents);
    for input in &shm_inputs {
        tensors.push(input.read(&state.shm, Some(&r.id), &served.name).map_err(status)?);
    }
    let sequence = sequence_params(&r.parameters).map_err(Status::invalid_argument)?;
    let decoded = decoding.elapsed();
    let batch = served.batch_of(&tensors);
    if let Some(trace) = &mut trace {
        trace.point("QUEUE_START", std::time::Instant::now());
    }
    let mut inference = state.infer(&served, tensors, &sequence, decoded).await.map_err(status)?;
    ServerState::traced_compute(&mut trace, &inference);
    let encoding = std::time::Instant::now();
    crate::body::share(&mut inference.outputs);
    let mut outputs = Vec::with_capacity(wanted.len());
    let mut raw = Vec::with_capacity(wanted.len());
    for want in &wanted {
        let Some(tensor) = inference.outputs.iter().find(|t| t.name == want.name) else { continue };
        let tensor = want.answer(&served, tensor).map_err(status)?;
        let bytes = crate::body::tensor_bytes(&tensor.data);
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
                raw.push(bytes::Bytes::new());
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
