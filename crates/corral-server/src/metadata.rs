//! What the server says about itself and its models, in one protocol-neutral form
//! ([`TensorMeta`], [`ConfigView`]) that REST renders as JSON and gRPC as messages.
//!
//! Shapes follow Triton: a model with `max_batch_size` > 0 has a batch dimension, shown as
//! `-1` in metadata and left out of the config's `dims`. Without a `config.pbtxt`, the
//! engine's own signature is used with `max_batch_size` 0 (the full shape in `dims`).

use std::sync::atomic::Ordering::Relaxed;

use corral_engine::DataType;
use serde_json::{Value, json};

use crate::{codec::WantedOutput, counters::Tally, error::CallError, repository::Declared, state::Served};

pub const SERVER_NAME: &str = "corral";
/// The Triton extensions served, in Triton's names.
pub const EXTENSIONS: [&str; 9] = [
    "classification",
    "sequence",
    "binary_tensor_data",
    "model_configuration",
    "model_repository",
    "statistics",
    "metrics",
    "system_shared_memory",
    "trace",
];

pub fn server() -> Value {
    json!({ "name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS })
}

/// A tensor as metadata and config show it.
pub struct TensorMeta {
    pub name: String,
    pub datatype: DataType,
    /// With the batch dimension (`-1`) when the model batches.
    pub shape: Vec<i64>,
    /// Without it.
    pub dims: Vec<i64>,
    /// `config.pbtxt`'s input `format` and output `label_filename`, when given.
    pub format: Option<String>,
    pub label_filename: Option<String>,
}

fn views(served: &Served, declared: &[Declared], engine: &[corral_engine::TensorSpec]) -> Vec<TensorMeta> {
    let batched = served.config.max_batch_size > 0;
    if declared.is_empty() {
        return engine
            .iter()
            .map(|spec| {
                let dims = if batched { spec.shape.iter().skip(1).copied().collect() } else { spec.shape.clone() };
                let mut shape = spec.shape.clone();
                if batched && let Some(first) = shape.first_mut() {
                    *first = -1;
                }
                TensorMeta {
                    name: spec.name.clone(),
                    datatype: spec.datatype,
                    shape,
                    dims,
                    format: None,
                    label_filename: None,
                }
            })
            .collect();
    }
    declared
        .iter()
        .map(|d| {
            let shape =
                if batched { std::iter::once(-1).chain(d.dims.iter().copied()).collect() } else { d.dims.clone() };
            TensorMeta {
                name: d.name.clone(),
                datatype: d.datatype,
                shape,
                dims: d.dims.clone(),
                format: d.format.clone(),
                label_filename: d.label_filename.clone(),
            }
        })
        .collect()
}

pub fn inputs(served: &Served) -> Vec<TensorMeta> {
    views(served, &served.config.inputs, served.model.inputs())
}

pub fn outputs(served: &Served) -> Vec<TensorMeta> {
    views(served, &served.config.outputs, served.model.outputs())
}

fn tensors_json(views: &[TensorMeta]) -> Vec<Value> {
    views.iter().map(|t| json!({ "name": t.name, "datatype": t.datatype.kserve_name(), "shape": t.shape })).collect()
}

/// Model metadata; `versions` as Triton lists them: the version asked for, else every loaded
/// version (see [`versions_listed`]).
pub fn model(served: &Served, versions: &[String]) -> Value {
    json!({
        "name": served.name,
        "versions": versions,
        "platform": served.config.platform,
        "inputs": tensors_json(&inputs(served)),
        "outputs": tensors_json(&outputs(served)),
    })
}

/// The `versions` of a model's metadata: the one asked for, else each loaded version
/// (Triton: `ModelMetadata` lists every ready version when none is named).
pub fn versions_listed(state: &crate::state::ServerState, served: &Served, asked: &str) -> Vec<String> {
    if asked.is_empty() {
        state.versions(&served.name).iter().map(|s| s.version.clone()).collect()
    } else {
        vec![served.version.clone()]
    }
}

/// Triton's name for a datatype in a model config: `TYPE_FP32`, `TYPE_STRING` (BYTES), …
pub fn config_type(datatype: DataType) -> String {
    match datatype {
        DataType::Bytes => "TYPE_STRING".to_owned(),
        other => format!("TYPE_{}", other.kserve_name()),
    }
}

pub fn backend(served: &Served) -> &'static str {
    if served.config.platform == "corral_sim" { "corral_sim" } else { "onnxruntime" }
}

/// Triton's ModelConfig JSON (what perf_analyzer reads first).
pub fn config(served: &Served) -> Value {
    let tensor = |t: &TensorMeta| {
        let mut tensor = json!({ "name": t.name, "data_type": config_type(t.datatype), "dims": t.dims });
        if let Some(format) = &t.format {
            tensor["format"] = json!(format);
        }
        if let Some(file) = &t.label_filename {
            tensor["label_filename"] = json!(file);
        }
        tensor
    };
    let mut config = json!({
        "name": served.name,
        "platform": served.config.platform,
        "backend": backend(served),
        "max_batch_size": served.config.max_batch_size,
        "input": inputs(served).iter().map(tensor).collect::<Vec<_>>(),
        "output": outputs(served).iter().map(tensor).collect::<Vec<_>>(),
        "instance_group": [{
            "name": served.name,
            "kind": "KIND_CPU",
            "count": served.model.instances().len(),
        }],
        "parameters": {
            "corral.cores": { "string_value": served.model.cores_per_instance().to_string() },
            "corral.elastic": { "string_value": served.model.elastic().to_string() },
        },
    });
    if let Some(delay) = served.config.batch_delay {
        config["dynamic_batching"] = json!({ "max_queue_delay_microseconds": delay.as_micros() as u64 });
    }
    if let Some(sequence) = &served.config.sequence {
        config["sequence_batching"] = sequence_json(sequence);
    }
    config
}

fn sequence_json(sequence: &crate::repository::SequenceConfig) -> Value {
    use crate::repository::{ControlKind, Flag, FlagValues};
    let inputs: Vec<Value> = sequence
        .controls
        .iter()
        .map(|c| {
            let control = match c.kind {
                ControlKind::Flag(flag, values) => {
                    let kind = match flag {
                        Flag::Start => "CONTROL_SEQUENCE_START",
                        Flag::End => "CONTROL_SEQUENCE_END",
                        Flag::Ready => "CONTROL_SEQUENCE_READY",
                    };
                    match values {
                        FlagValues::Int32(v) => json!({ "kind": kind, "int32_false_true": v }),
                        FlagValues::Fp32(v) => json!({ "kind": kind, "fp32_false_true": v }),
                        FlagValues::Bool(v) => json!({ "kind": kind, "bool_false_true": v }),
                    }
                }
                ControlKind::CorrId(datatype) => {
                    json!({ "kind": "CONTROL_SEQUENCE_CORRID", "data_type": config_type(datatype) })
                }
            };
            json!({ "name": c.input, "control": [control] })
        })
        .collect();
    json!({
        "max_sequence_idle_microseconds": sequence.idle.as_micros() as u64,
        "control_input": inputs,
        "direct": {},
    })
}

fn duration_json(tally: &Tally) -> Value {
    json!({ "count": tally.count.load(Relaxed), "ns": tally.ns.load(Relaxed) })
}

/// Triton's statistics for one model.
pub fn stats(served: &Served) -> Value {
    let c = &served.counters;
    let compute = c.compute.read().map(|(count, ns)| json!({ "count": count, "ns": ns }));
    json!({
        "name": served.name,
        "version": served.version,
        "last_inference": c.last_inference_ms.load(Relaxed),
        "inference_count": c.inferences.load(Relaxed),
        "execution_count": c.executions.load(Relaxed),
        "inference_stats": {
            "success": duration_json(&c.success),
            "fail": duration_json(&c.fail),
            "queue": duration_json(&c.queue),
            "compute_input": compute[0],
            "compute_infer": compute[1],
            "compute_output": compute[2],
            "cache_hit": { "count": 0, "ns": 0 },
            "cache_miss": { "count": 0, "ns": 0 },
        },
        "response_stats": {},
        "batch_stats": c.batch_stats().iter().map(|(batch_size, b)| {
            let of = |ns: u64| json!({ "count": b.count, "ns": ns });
            json!({
                "batch_size": batch_size,
                "compute_input": of(b.compute_input_ns),
                "compute_infer": of(b.compute_infer_ns),
                "compute_output": of(b.compute_output_ns),
            })
        }).collect::<Vec<_>>(),
        "memory_usage": [],
    })
}

/// The outputs to return, in the model's order when none were named, each with its binary
/// choice made (`binary` always `Some`); an unknown name is the client's mistake.
pub fn wanted_outputs(
    served: &Served,
    wanted: &[WantedOutput],
    binary_all: bool,
) -> Result<Vec<WantedOutput>, CallError> {
    let names: Vec<&str> = served.model.outputs().iter().map(|o| o.name.as_str()).collect();
    if wanted.is_empty() {
        return Ok(names
            .iter()
            .map(|n| WantedOutput { name: n.to_string(), binary: Some(binary_all), shm: None, class_count: 0 })
            .collect());
    }
    wanted
        .iter()
        .map(|w| {
            if names.contains(&w.name.as_str()) {
                Ok(WantedOutput { binary: Some(w.binary.unwrap_or(binary_all)), ..w.clone() })
            } else {
                Err(CallError::bad_request(format!(
                    "model `{}` has no output `{}`; its outputs are {}",
                    served.name,
                    w.name,
                    names.join(", ")
                )))
            }
        })
        .collect()
}

impl WantedOutput {
    /// The tensor to send for this output: `tensor` itself or its classes.
    pub fn answer<'a>(
        &self,
        served: &Served,
        tensor: &'a corral_engine::Tensor,
    ) -> Result<std::borrow::Cow<'a, corral_engine::Tensor>, CallError> {
        let labels = served.config.outputs.iter().find(|o| o.name == self.name).map_or(&[][..], |o| &o.labels[..]);
        crate::classify::answer(tensor, self.class_count, served.config.max_batch_size > 0, labels)
    }
}
