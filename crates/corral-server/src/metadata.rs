//! What the server says about itself and its models, in one protocol-neutral form
//! (tensors as `TensorSpec`s, the configuration, [`ModelStats`]) that REST renders as JSON and
//! gRPC as messages.
//!
//! Shapes follow Triton: a model with `max_batch_size` > 0 has a batch dimension, shown as
//! `-1` in metadata and left out of the config's `dims`. Without a `config.pbtxt`, the
//! engine's own signature is used with `max_batch_size` 0 (the full shape in `dims`).

use std::sync::atomic::Ordering::Relaxed;

use corral_engine::{DataType, TensorSpec};
use serde_json::{Value, json};

use corral_config::{
    ModelConfig, ModelInput, ModelInstanceGroup, ModelOutput, ModelParameter, ModelVersionPolicy,
    model_config::SchedulingChoice, model_instance_group, model_optimization_policy, model_version_policy,
};

use crate::{counters::Tally, state::Served};

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

/// A tensor's dimensions without the batch dimension: the configuration's `dims`.
pub fn dims<'a>(served: &Served, spec: &'a TensorSpec) -> &'a [i64] {
    if served.config.max_batch_size > 0 { spec.shape.get(1..).unwrap_or_default() } else { &spec.shape }
}

pub fn inputs(served: &Served) -> Vec<TensorSpec> {
    served.views(&served.config.inputs, served.input_specs())
}

pub fn outputs(served: &Served) -> Vec<TensorSpec> {
    served.views(&served.config.outputs, served.output_specs())
}

fn tensors_json(views: &[TensorSpec]) -> Vec<Value> {
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

/// A datatype as a model config's (`TYPE_FP32`, `TYPE_STRING` for BYTES, …).
fn config_type(datatype: DataType) -> i32 {
    let name = match datatype {
        DataType::Bytes => "TYPE_STRING".to_owned(),
        other => format!("TYPE_{}", other.kserve_name()),
    };
    corral_config::DataType::from_str_name(&name).map_or(0, |t| t as i32)
}

pub fn backend(served: &Served) -> &'static str {
    let Some(model) = served.model() else {
        // Triton: an ensemble has a platform and no backend.
        return "";
    };
    match model.engine().engine.as_str() {
        _ if served.config.platform == "corral_sim" => "corral_sim",
        "python" => "python",
        _ => "onnxruntime",
    }
}

/// The model's configuration as the configuration endpoints answer it (REST as JSON, gRPC as
/// the message): the message as read, completed as Triton completes it (core
/// model_config_utils.cc: `AutoCompleteBackendFields`, `NormalizeModelConfig`,
/// `NormalizeInstanceGroup`; the ONNX Runtime backend's tensors from the model when none are
/// declared), plus what is live in corral: the instance count (the autopilot changes it) and
/// the `corral.cores` / `corral.elastic` / `corral.engine` (and, when measured,
/// `corral.engine.reason`) parameters.
pub fn config(served: &Served) -> ModelConfig {
    let mut config = served.config.model_config.clone();
    config.name = served.name.clone();
    if config.platform.is_empty() {
        config.platform = served.config.platform.clone();
    }
    if config.backend.is_empty() {
        config.backend = backend(served).to_owned();
    }
    if config.default_model_filename.is_empty() && served.config.platform == "onnxruntime_onnx" {
        config.default_model_filename = "model.onnx".to_owned();
    }
    config.max_batch_size = served.config.max_batch_size as i32;
    // (data_type, dims, name) of each tensor the model itself declares.
    let declared = |tensors: Vec<TensorSpec>| {
        tensors.into_iter().map(|t| (config_type(t.datatype), dims(served, &t).to_vec(), t.name))
    };
    if config.input.is_empty() {
        config.input = declared(inputs(served))
            .map(|(data_type, dims, name)| ModelInput { name, data_type, dims, ..Default::default() })
            .collect();
    }
    if config.output.is_empty() {
        config.output = declared(outputs(served))
            .map(|(data_type, dims, name)| ModelOutput { name, data_type, dims, ..Default::default() })
            .collect();
    }
    if config.version_policy.is_none() {
        let latest = model_version_policy::Latest { num_versions: 1 };
        config.version_policy =
            Some(ModelVersionPolicy { policy_choice: Some(model_version_policy::PolicyChoice::Latest(latest)) });
    }
    let max_batch_size = config.max_batch_size;
    match &mut config.scheduling_choice {
        Some(SchedulingChoice::DynamicBatching(batching))
            if batching.preferred_batch_size.is_empty() && max_batch_size > 0 =>
        {
            batching.preferred_batch_size.push(max_batch_size);
        }
        Some(SchedulingChoice::SequenceBatching(sequence)) if sequence.max_sequence_idle_microseconds == 0 => {
            sequence.max_sequence_idle_microseconds = 1_000_000;
        }
        _ => {}
    }
    let Some(model) = served.model() else {
        // An ensemble (core NormalizeModelConfig): no pinned-memory defaults, no instance
        // groups, and its transaction policy always present.
        config.model_transaction_policy.get_or_insert_with(Default::default);
        return config;
    };
    let optimization = config.optimization.get_or_insert_with(Default::default);
    optimization.input_pinned_memory.get_or_insert(model_optimization_policy::PinnedMemoryBuffer { enable: true });
    optimization.output_pinned_memory.get_or_insert(model_optimization_policy::PinnedMemoryBuffer { enable: true });
    // Instance groups: Triton names a group after the model (and its index), resolves
    // KIND_AUTO to KIND_CPU without GPUs, and gives a group without a count its default (1 in
    // corral: each instance owns cores). The count shown is what runs now: when the autopilot
    // has moved away from the configured counts, one group with the live count.
    let live = model.instances().len() as i32;
    let name = config.name.clone();
    for (i, group) in config.instance_group.iter_mut().enumerate() {
        if group.name.is_empty() {
            group.name = format!("{name}_{i}");
        }
        if group.kind == model_instance_group::Kind::Auto as i32 {
            group.kind = model_instance_group::Kind::Cpu as i32;
        }
        group.count = group.count.max(1);
    }
    if config.instance_group.iter().map(|g| g.count).sum::<i32>() != live {
        let first = config.instance_group.first().map_or_else(|| name.clone(), |g| g.name.clone());
        config.instance_group = vec![ModelInstanceGroup {
            name: first,
            kind: model_instance_group::Kind::Cpu as i32,
            count: live,
            ..Default::default()
        }];
    }
    let engine = model.engine();
    for (key, value) in [
        ("corral.cores", Some(model.cores_per_instance().to_string())),
        ("corral.elastic", Some(model.elastic().to_string())),
        ("corral.engine", Some(engine.engine)),
        ("corral.engine.reason", engine.reason),
    ] {
        if let Some(value) = value {
            config.parameters.insert(key.to_owned(), ModelParameter { string_value: value });
        }
    }
    for (timed, median) in engine.medians_us {
        let value = ModelParameter { string_value: format!("{:.3}", median as f64 / 1e3) };
        config.parameters.insert(format!("corral.engine.median_ms.{timed}"), value);
    }
    config
}

/// The configuration as REST's configuration endpoint answers it (Triton's `ModelConfigToJson`).
pub fn config_json(served: &Served) -> Value {
    corral_config::to_json(&config(served))
}

/// A count of calls and their time, as Triton's statistics give them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Duration {
    pub count: u64,
    pub ns: u64,
}

impl From<&Tally> for Duration {
    fn from(tally: &Tally) -> Duration {
        Duration { count: tally.count.load(Relaxed), ns: tally.ns.load(Relaxed) }
    }
}

/// One batch size's executions (Triton's `batch_stats`).
pub struct BatchStats {
    pub batch_size: u64,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
}

/// Triton's statistics of one model version, read once from its counters; REST renders
/// them as JSON ([`stats`]), gRPC as messages.
pub struct ModelStats {
    pub name: String,
    pub version: String,
    pub last_inference: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub success: Duration,
    pub fail: Duration,
    pub queue: Duration,
    /// Triton's `compute_input`, `compute_infer` and `compute_output`.
    pub compute: [Duration; 3],
    pub batches: Vec<BatchStats>,
}

/// The statistics of `served`, now.
pub fn model_stats(served: &Served) -> ModelStats {
    let c = &served.counters;
    let batches = c
        .batch_stats()
        .into_iter()
        .map(|(batch_size, b)| {
            let of = |ns: u64| Duration { count: b.count, ns };
            BatchStats {
                batch_size,
                compute_input: of(b.compute_input_ns),
                compute_infer: of(b.compute_infer_ns),
                compute_output: of(b.compute_output_ns),
            }
        })
        .collect();
    ModelStats {
        name: served.name.clone(),
        version: served.version.clone(),
        last_inference: c.last_inference_ms.load(Relaxed),
        inference_count: c.inferences.load(Relaxed),
        execution_count: c.executions.load(Relaxed),
        success: Duration::from(&c.success),
        fail: Duration::from(&c.fail),
        queue: Duration::from(&c.queue),
        compute: c.compute.read().map(|(count, ns)| Duration { count, ns }),
        batches,
    }
}

/// Triton's statistics for one model, as REST's JSON.
pub fn stats(served: &Served) -> Value {
    let s = model_stats(served);
    let d = |d: Duration| json!({ "count": d.count, "ns": d.ns });
    json!({
        "name": s.name,
        "version": s.version,
        "last_inference": s.last_inference,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": d(s.success),
            "fail": d(s.fail),
            "queue": d(s.queue),
            "compute_input": d(s.compute[0]),
            "compute_infer": d(s.compute[1]),
            "compute_output": d(s.compute[2]),
            "cache_hit": d(Duration::default()),
            "cache_miss": d(Duration::default()),
        },
        "response_stats": {},
        "batch_stats": s.batches.iter().map(|b| json!({
            "batch_size": b.batch_size,
            "compute_input": d(b.compute_input),
            "compute_infer": d(b.compute_infer),
            "compute_output": d(b.compute_output),
        })).collect::<Vec<_>>(),
        "memory_usage": [],
    })
}
