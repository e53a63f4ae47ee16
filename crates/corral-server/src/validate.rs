//! A request checked against its model as Triton checks it, before anything runs, so clients
//! and tests written for Triton see its words and codes (`core/src/infer_request.cc`:
//! `AddOriginalInput`, `AddOriginalRequestedOutput`, then `Normalize`): duplicate inputs and
//! outputs; outputs the model lacks; the input count; names; the batch dimension; each
//! input's datatype and shape. The messages are `triton.rs`'s (most start with Triton's
//! `[request id: <id>] ` prefix, `<id_unknown>` without an id, as Triton's do).
//!
//! The runtime checks inputs again (every front end gets its checks); this module only decides
//! which of Triton's errors a request meets first.

use corral_engine::DataType;

use crate::{error::CallError, metadata, state::Served, triton};

/// What a request says about one input, before its data is read.
pub struct InputMeta<'a> {
    pub name: &'a str,
    pub datatype: DataType,
    pub shape: &'a [usize],
}

/// Checks a request's inputs and requested outputs against `served`, in Triton's order.
pub fn request(served: &Served, id: Option<&str>, inputs: &[InputMeta], outputs: &[&str]) -> Result<(), CallError> {
    let model = &served.name;
    // Parsing: a name given twice.
    for (i, input) in inputs.iter().enumerate() {
        if inputs[..i].iter().any(|other| other.name == input.name) {
            return Err(triton::duplicate_input(id, input.name));
        }
    }
    for (i, output) in outputs.iter().enumerate() {
        if outputs[..i].contains(output) {
            return Err(triton::duplicate_output(id, output));
        }
    }
    // Normalize: requested outputs, the input count, names, then each input.
    let declared_outputs = metadata::outputs(served);
    if let Some(unknown) = outputs.iter().find(|o| !declared_outputs.iter().any(|d| d.name == **o)) {
        return Err(triton::unexpected_output(unknown, model));
    }
    let declared = metadata::inputs(served);
    // Inputs the configuration marks `optional` may be left out (ValidateRequestInputs).
    let optional = |name: &str| served.config.inputs.iter().any(|d| d.spec.name == name && d.optional);
    let required = declared.iter().filter(|d| !optional(&d.name)).count();
    if inputs.len() > declared.len() || inputs.len() < required {
        let given: Vec<&str> = inputs.iter().map(|i| i.name).collect();
        let missing: Vec<&str> =
            declared.iter().map(|d| d.name.as_str()).filter(|d| !given.contains(d) && !optional(d)).collect();
        if required == declared.len() {
            return Err(triton::input_count(id, model, declared.len(), &given, &missing));
        }
        return Err(triton::input_count_between(id, model, (required, declared.len()), &given, &missing));
    }
    if let Some(unknown) = inputs.iter().find(|i| !declared.iter().any(|d| d.name == i.name)) {
        return Err(triton::unexpected_input(unknown.name, model));
    }
    let max_batch_size = served.config.max_batch_size;
    if max_batch_size > 0 {
        let mut batch = None;
        for input in inputs {
            let Some(&rows) = input.shape.first() else {
                return Err(triton::no_batch_dimension(id, input.name, model));
            };
            if batch.is_some_and(|b| b != rows) {
                return Err(triton::batch_mismatch(id, input.name, model));
            }
            batch = Some(rows);
        }
        if batch.is_some_and(|b| b > max_batch_size) {
            return Err(triton::batch_too_large(id, max_batch_size, model));
        }
    }
    for input in inputs {
        let want = declared.iter().find(|d| d.name == input.name).expect("names checked above");
        if input.datatype != want.datatype {
            return Err(triton::datatype_mismatch(id, input.name, model, input.datatype, want.datatype));
        }
        let fits = input.shape.len() == want.shape.len()
            && input.shape.iter().zip(&want.shape).all(|(&got, &expected)| expected < 0 || got as i64 == expected);
        if !fits {
            return Err(triton::shape_mismatch(id, input.name, model, &want.shape, input.shape, max_batch_size > 0));
        }
    }
    Ok(())
}
