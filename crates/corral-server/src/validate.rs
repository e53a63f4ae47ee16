//! A request checked against its model as Triton checks it, before anything runs, so clients
//! and tests written for Triton see its words and codes (`core/src/infer_request.cc`:
//! `AddOriginalInput`, `AddOriginalRequestedOutput`, then `Normalize`): duplicate inputs and
//! outputs; outputs the model lacks; the input count; names; the batch dimension; each
//! input's datatype and shape. Messages from Triton's request checks start with its
//! `[request id: <id>] ` prefix (`<id_unknown>` without an id), as Triton's do.
//!
//! The runtime checks inputs again (every front end gets its checks); this module only decides
//! which of Triton's errors a request meets first.

use corral_engine::DataType;

use crate::{
    error::{CallError, request_prefix as prefix},
    metadata,
    state::Served,
};

/// What a request says about one input, before its data is read.
pub struct InputMeta<'a> {
    pub name: &'a str,
    pub datatype: DataType,
    pub shape: &'a [usize],
}

fn list(names: &[&str]) -> String {
    format!("[{}]", names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(","))
}

fn dims<T: std::fmt::Display>(dims: &[T]) -> String {
    format!("[{}]", dims.iter().map(T::to_string).collect::<Vec<_>>().join(","))
}

/// Checks a request's inputs and requested outputs against `served`, in Triton's order.
pub fn request(served: &Served, id: Option<&str>, inputs: &[InputMeta], outputs: &[&str]) -> Result<(), CallError> {
    let model = &served.name;
    let prefix = prefix(id);
    let bad = |message: String| Err(CallError::bad_request(message));
    // Parsing: a name given twice.
    for (i, input) in inputs.iter().enumerate() {
        if inputs[..i].iter().any(|other| other.name == input.name) {
            return bad(format!("{prefix}input '{}' already exists in request", input.name));
        }
    }
    for (i, output) in outputs.iter().enumerate() {
        if outputs[..i].contains(output) {
            return bad(format!("{prefix}output '{output}' already exists in request"));
        }
    }
    // Normalize: requested outputs, the input count, names, then each input.
    let declared_outputs = metadata::outputs(served);
    if let Some(unknown) = outputs.iter().find(|o| !declared_outputs.iter().any(|d| d.name == **o)) {
        return bad(format!("unexpected inference output '{unknown}' for model '{model}'"));
    }
    let declared = metadata::inputs(served);
    if inputs.len() != declared.len() {
        let given: Vec<&str> = inputs.iter().map(|i| i.name).collect();
        let missing: Vec<&str> = declared.iter().map(|d| d.name.as_str()).filter(|d| !given.contains(d)).collect();
        return bad(format!(
            "{prefix}expected {} inputs but got {} inputs for model '{model}'. Got input(s) {}, but missing required input(s) {}. Please provide all required input(s).",
            declared.len(),
            inputs.len(),
            list(&given),
            list(&missing)
        ));
    }
    if let Some(unknown) = inputs.iter().find(|i| !declared.iter().any(|d| d.name == i.name)) {
        return bad(format!("unexpected inference input '{}' for model '{model}'", unknown.name));
    }
    let max_batch_size = served.config.max_batch_size;
    if max_batch_size > 0 {
        let mut batch = None;
        for input in inputs {
            let Some(&rows) = input.shape.first() else {
                return bad(format!(
                    "{prefix}input '{}' has no shape but model requires batch dimension for '{model}'",
                    input.name
                ));
            };
            if batch.is_some_and(|b| b != rows) {
                return bad(format!(
                    "{prefix}input '{}' batch size does not match other inputs for '{model}'",
                    input.name
                ));
            }
            batch = Some(rows);
        }
        if batch.is_some_and(|b| b > max_batch_size) {
            return bad(format!("{prefix}inference request batch-size must be <= {max_batch_size} for '{model}'"));
        }
    }
    for input in inputs {
        let want = declared.iter().find(|d| d.name == input.name).expect("names checked above");
        if input.datatype != want.datatype {
            return bad(format!(
                "{prefix}inference input '{}' data-type is '{}', but model '{model}' expects '{}'",
                input.name,
                input.datatype.kserve_name(),
                want.datatype.kserve_name()
            ));
        }
        let fits = input.shape.len() == want.shape.len()
            && input.shape.iter().zip(&want.shape).all(|(&got, &expected)| expected < 0 || got as i64 == expected);
        if !fits {
            let note = if max_batch_size > 0 {
                "NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be prepended to each input shape. If you want to specify the full shape including the batch dim in your input dims config, try setting max_batch_size to zero. See the model configuration docs for more info on max_batch_size."
            } else {
                ""
            };
            return bad(format!(
                "{prefix}unexpected shape for input '{}' for model '{model}'. Expected {}, got {}. {note}",
                input.name,
                dims(&want.shape),
                dims(input.shape)
            ));
        }
    }
    Ok(())
}
