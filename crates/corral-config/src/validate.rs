//! The checks Triton makes of a model configuration once it is read, in its order and words
//! (core `model_config_utils.cc`: `ValidateModelConfig`, then `ValidateModelIOConfig` with
//! `ValidateIOShape` and `ValidateBatchIO`, then `ValidateInstanceGroup`), so a configuration
//! Triton refuses is refused with the same message (the cases of Triton's
//! `qa/L0_model_config` that apply to ONNX are tests here).
//!
//! Triton checks the configuration after completing it; [`validate`] sees it as Triton would
//! then: the model's name from its folder when the file gives none, instance groups named
//! `NAME_i` and `KIND_AUTO` read as `KIND_CPU` (no GPUs), and the backend `onnxruntime` when
//! only the model file tells it. What depends on the model file itself (the tensors' shapes
//! against the graph's) is the engine's to check at load.

use std::collections::BTreeSet;

use crate::{
    DataType, ModelConfig, ModelInput, ModelOutput, ModelQueuePolicy, ModelSequenceBatching, ModelTensorReshape,
    batch_input, batch_output, model_instance_group, model_queue_policy,
    model_sequence_batching::{self, control::Kind as ControlKind},
};

/// Triton's `WILDCARD_DIM`: a dimension of any size.
const WILDCARD: i64 = -1;

/// Triton's ensemble platform (core constants.h, `kEnsemblePlatform`).
pub const ENSEMBLE: &str = "ensemble";

/// Checks `config` of the model named `model` (its folder's name) as Triton does; the first
/// problem found, in Triton's words. `backend` is the backend as Triton completes it
/// (`onnxruntime` for an ONNX model whose configuration names none: its file tells).
pub fn validate(config: &ModelConfig, model: &str, backend: &str) -> Result<(), String> {
    let name = if config.name.is_empty() { model } else { config.name.as_str() };
    // ValidateModelConfig. A known backend must go with its platform.
    let platform = config.platform.as_str();
    if platform == ENSEMBLE && !config.backend.is_empty() {
        return Err(format!("Ensemble model '{name}' must have platform type 'ensemble' and empty backend type"));
    }
    if backend == "onnxruntime" && !platform.is_empty() && platform != "onnxruntime_onnx" {
        return Err(format!("unexpected 'platform' and 'backend' pair, got:{platform}, {backend}"));
    }
    if config.max_batch_size < 0 {
        return Err(format!("'max_batch_size' must be non-negative value for {name}"));
    }
    if let Some(batching) = config.dynamic_batching() {
        for &size in &batching.preferred_batch_size {
            if size <= 0 {
                return Err(format!("dynamic batching preferred size must be positive for {name}"));
            }
            if size > config.max_batch_size {
                return Err(format!("dynamic batching preferred size must be <= max batch size for {name}"));
            }
        }
        let levels = batching.priority_levels;
        if levels != 0 {
            if batching.default_priority_level == 0 || batching.default_priority_level > levels {
                return Err(format!("default priority level must be in range [1, {levels}] for {name}"));
            }
            if batching.priority_queue_policy.keys().any(|&level| level == 0 || level > levels) {
                return Err(format!(
                    "priority queue policy must have priority level in range [1, {levels}] for {name}"
                ));
            }
        }
        if batching.preserve_ordering {
            if levels > 1 {
                return Err(format!("Only one priority level is allowed when 'preserve_ordering' is true for {name}"));
            }
            let delays = |policy: &ModelQueuePolicy| {
                policy.default_timeout_microseconds != 0
                    && policy.timeout_action == model_queue_policy::TimeoutAction::Delay as i32
            };
            if batching.default_queue_policy.as_ref().is_some_and(delays)
                || batching.priority_queue_policy.values().any(delays)
            {
                return Err(format!(
                    "Queue policy can not have DELAY as timeout action when 'preserve_ordering' is true for {name}"
                ));
            }
        }
    }
    if let Some(sequence) = config.sequence_batching() {
        if config.response_cache.as_ref().is_some_and(|c| c.enable) {
            return Err(format!(
                "Response Cache does not currently support model {name} with sequence batching scheduler. Please disable the response cache."
            ));
        }
        sequence_controls(sequence, name)?;
        if let Some(model_sequence_batching::StrategyChoice::Oldest(oldest)) = &sequence.strategy_choice {
            for &size in &oldest.preferred_batch_size {
                if size <= 0 {
                    return Err(format!("sequence batching preferred batch size must be positive for {name}"));
                }
                if size > config.max_batch_size {
                    return Err(format!("sequence batching preferred batch size must be <= max batch size for {name}"));
                }
            }
        }
        if let Some(model_sequence_batching::StrategyChoice::Direct(direct)) = &sequence.strategy_choice
            && !(0.0..=1.0).contains(&direct.minimum_slot_utilization)
        {
            return Err(format!("sequence batching minimum slot utilization must be in range (0.0, 1.0] for {name}"));
        }
    }
    match config.ensemble_scheduling() {
        Some(ensembling) => ensemble_scheduling(config, ensembling, name)?,
        None if platform == ENSEMBLE => {
            return Err(format!("ensemble scheduling must be set for ensemble {name} whose platform is ensemble"));
        }
        None => {}
    }
    if config.model_transaction_policy.as_ref().is_some_and(|p| p.decoupled)
        && config.response_cache.as_ref().is_some_and(|c| c.enable)
    {
        return Err(format!(
            "Response Cache does not currently support model {name} with 'decoupled' transaction policy. Please disable the response cache."
        ));
    }
    // ValidateModelIOConfig: each problem followed by " for NAME".
    let io = || -> Result<(), String> {
        for input in &config.input {
            tensor(&Tensor::from(input), config.max_batch_size, "model input ")?;
            let image = [crate::model_input::Format::Nhwc as i32, crate::model_input::Format::Nchw as i32];
            if image.contains(&input.format) && input.dims.len() != 3 {
                return Err("model input NHWC/NCHW require 3 dims".to_owned());
            }
            if input.is_shape_tensor {
                return Err("shape tensors are only supported for TensorRT platform".to_owned());
            }
        }
        for output in &config.output {
            tensor(&Tensor::from(output), config.max_batch_size, "model output ")?;
            if output.is_shape_tensor {
                return Err("shape tensors are only supported for TensorRT platform".to_owned());
            }
        }
        batch_io(config)
    };
    io().map_err(|problem| format!("{problem} for {name}"))?;
    // ValidateInstanceGroup, on groups named and kinds resolved as Triton's normalizing does.
    for (i, group) in config.instance_group.iter().enumerate() {
        let group_name = if group.name.is_empty() { format!("{name}_{i}") } else { group.name.clone() };
        let kind = model_instance_group::Kind::try_from(group.kind).unwrap_or(model_instance_group::Kind::Auto);
        let kind_name = match kind {
            model_instance_group::Kind::Auto => "KIND_CPU",
            other => other.as_str_name(),
        };
        match kind {
            model_instance_group::Kind::Gpu => {
                return Err(format!(
                    "instance group {group_name} of model {name} has kind KIND_GPU but server does not support GPUs"
                ));
            }
            _ if !group.gpus.is_empty() => {
                return Err(format!(
                    "instance group {group_name} of model {name} has kind {kind_name} but specifies one or more GPUs"
                ));
            }
            _ => {}
        }
        if !group.profile.is_empty() && config.platform != "tensorrt_plan" {
            return Err(format!(
                "instance group {group_name} of model {name} and platform {}specifies profile field which is only supported for TensorRT models",
                config.platform
            ));
        }
    }
    Ok(())
}

/// What `ValidateIOShape` reads of an input or an output.
struct Tensor<'a> {
    name: &'a str,
    data_type: i32,
    dims: &'a [i64],
    reshape: Option<&'a ModelTensorReshape>,
}

impl<'a> From<&'a ModelInput> for Tensor<'a> {
    fn from(t: &'a ModelInput) -> Tensor<'a> {
        Tensor { name: &t.name, data_type: t.data_type, dims: &t.dims, reshape: t.reshape.as_ref() }
    }
}

impl<'a> From<&'a ModelOutput> for Tensor<'a> {
    fn from(t: &'a ModelOutput) -> Tensor<'a> {
        Tensor { name: &t.name, data_type: t.data_type, dims: &t.dims, reshape: t.reshape.as_ref() }
    }
}

/// Triton's `ValidateEnsembleSchedulingConfig` (model_config_utils.cc, `BuildEnsembleGraph`
/// included): what the configuration alone says of an ensemble's steps and tensors; what
/// needs its steps' models (their tensors, versions) is the server's to check at load. Steps
/// are counted from 0, and two messages keep Triton's unbalanced quote.
fn ensemble_scheduling(config: &ModelConfig, ensembling: &crate::ModelEnsembling, name: &str) -> Result<(), String> {
    use std::collections::BTreeMap;
    if config.platform != ENSEMBLE {
        return Err(format!("ensemble scheduling cannot be set for model '{name}' whose platform is not ensemble"));
    }
    if !config.instance_group.is_empty() {
        return Err(format!("instance group should not be specified for ensemble '{name}'"));
    }
    if config.optimization.is_some() {
        return Err(format!("optimization should not be specified for ensemble '{name}'"));
    }
    if !config.model_warmup.is_empty() {
        return Err(format!("model_warmup can not be specified for ensemble '{name}'"));
    }
    if ensembling.step.is_empty() {
        return Err(format!("must specify 'step' for ensemble '{name}'"));
    }
    // The tensors' graph: which steps' outputs write each tensor and which tensors each
    // tensor feeds (every input of a step feeds every output of it).
    #[derive(Default)]
    struct Node {
        output: bool,
        from: BTreeSet<String>,
        to: BTreeSet<String>,
    }
    let mut graph: BTreeMap<String, Node> = BTreeMap::new();
    for (index, step) in ensembling.step.iter().enumerate() {
        for (field, empty) in [
            ("model_name", step.model_name.is_empty()),
            ("input_map", step.input_map.is_empty()),
            ("output_map", step.output_map.is_empty()),
        ] {
            if empty {
                return Err(format!("must specify '{field}' in step {index} of ensemble '{name}'"));
            }
        }
        for tensor in step.output_map.values() {
            let node = graph.entry(tensor.clone()).or_default();
            if node.output {
                return Err(format!(
                    "ensemble tensor '{tensor}' can appear in an output map only once for ensemble '{name}' step {index}"
                ));
            }
            node.output = true;
        }
        for input in step.input_map.values() {
            graph.entry(input.clone()).or_default().to.extend(step.output_map.values().cloned());
            for output in step.output_map.values() {
                graph.entry(output.clone()).or_default().from.insert(input.clone());
            }
        }
    }
    let mut ready: BTreeSet<&str> = BTreeSet::new();
    for input in &config.input {
        if !graph.contains_key(&input.name) {
            return Err(format!("ensemble input '{}' for ensemble {name}' is not used", input.name));
        }
        ready.insert(&input.name);
    }
    // A tensor is ready once every tensor it comes from is.
    let mut grown = true;
    while grown {
        grown = false;
        for (tensor, node) in &graph {
            if !ready.contains(tensor.as_str())
                && !node.from.is_empty()
                && node.from.iter().all(|f| ready.contains(f.as_str()))
            {
                ready.insert(tensor);
                grown = true;
            }
        }
    }
    for output in &config.output {
        let Some(node) = graph.get(&output.name) else {
            return Err(format!("ensemble output '{}' for ensemble {name}' is not used", output.name));
        };
        if ready.contains(output.name.as_str()) {
            continue;
        }
        let mut message = format!("output '{}' for ensemble '{name}' is not written", output.name);
        // Back through the first tensor not ready, to the deepest one.
        let (mut last, mut at, mut seen) = (output.name.as_str(), node, BTreeSet::new());
        while let Some(previous) = at.from.iter().find(|f| !ready.contains(f.as_str())) {
            if !seen.insert(previous.as_str()) {
                break;
            }
            last = previous;
            at = &graph[previous];
        }
        if last != output.name {
            message += &format!(": at least one of its depending tensors, '{last}', is not connected");
        }
        return Err(message);
    }
    let outputs: BTreeSet<&str> = config.output.iter().map(|o| o.name.as_str()).collect();
    for (tensor, node) in &graph {
        if !outputs.contains(tensor.as_str()) && (!ready.contains(tensor.as_str()) || node.to.is_empty()) {
            return Err(format!("ensemble tensor '{tensor}' is unused in ensemble '{name}'"));
        }
    }
    Ok(())
}

/// Triton's `GetElementCount` of a shape: -1 when any dimension is a wildcard.
fn element_count(dims: &[i64]) -> i64 {
    if dims.contains(&WILDCARD) { -1 } else { dims.iter().product() }
}

/// The element counts between wildcards (`[2, 4, -1, 6]` → `[8, 6]`).
fn runs(dims: &[i64]) -> Vec<i64> {
    dims.split(|&d| d == WILDCARD).map(|run| run.iter().product()).collect()
}

/// `ValidateIOShape`: a name, a type, dims; no zero dimension; a reshape of the same size.
fn tensor(t: &Tensor, max_batch_size: i32, prefix: &str) -> Result<(), String> {
    if t.name.is_empty() {
        return Err(format!("{prefix}must specify 'name'"));
    }
    let prefix = format!("{prefix}'{}' ", t.name);
    if t.data_type == DataType::TypeInvalid as i32 {
        return Err(format!("{prefix}must specify 'data_type'"));
    }
    if t.dims.is_empty() {
        return Err(format!("{prefix}must specify 'dims'"));
    }
    if t.reshape.is_some_and(|r| r.shape.is_empty()) && max_batch_size == 0 {
        return Err(format!(
            "{prefix}cannot have empty reshape for non-batching model as scalar tensors are not supported"
        ));
    }
    let valid = |d: &i64| *d >= 1 || *d == WILDCARD;
    if !t.dims.iter().all(valid) {
        return Err(format!("{prefix}dimension must be integer >= 1, or -1 to indicate a variable-size dimension"));
    }
    if let Some(reshape) = t.reshape {
        if !reshape.shape.iter().all(valid) {
            return Err(format!(
                "{prefix}reshape dimensions must be integer >= 1, or -1 to indicate a variable-size dimension"
            ));
        }
        let (dims_size, reshape_size) = (element_count(t.dims), element_count(&reshape.shape));
        // An empty reshape is a scalar: its dims must hold one element.
        let reshape_size = if reshape.shape.is_empty() { 0 } else { reshape_size };
        if dims_size != reshape_size && (reshape_size != 0 || dims_size != 1) {
            return Err(format!("{prefix}has different size for dims and reshape"));
        }
        if dims_size == -1 {
            let (from, to) = (runs(t.dims), runs(&reshape.shape));
            if from.len() != to.len() {
                return Err(format!("{prefix}has different number of variable-size dimensions for dims and reshape"));
            }
            if from != to {
                return Err(format!("{prefix}has different size for dims and reshape"));
            }
        }
    }
    Ok(())
}

/// `ValidateBatchIO`: each batch input and output has one source among the inputs, and a batch
/// output's targets are outputs, each named once.
fn batch_io(config: &ModelConfig) -> Result<(), String> {
    let inputs: BTreeSet<&str> = config.input.iter().map(|t| t.name.as_str()).collect();
    let outputs: BTreeSet<&str> = config.output.iter().map(|t| t.name.as_str()).collect();
    let unknown_source = |sources: &[String]| -> Result<(), String> {
        match sources.iter().find(|s| !inputs.contains(s.as_str())) {
            Some(source) => Err(format!("unknown source input name '{source}'")),
            None => Ok(()),
        }
    };
    for batch in &config.batch_input {
        let kind = batch_input::Kind::try_from(batch.kind)
            .map_err(|_| format!("unknown batch input kind '{}'", batch.kind))?;
        if batch.source_input.len() != 1 {
            return Err(format!(
                "batch input kind '{}' expects 1 source input, got {}",
                kind.as_str_name(),
                batch.source_input.len()
            ));
        }
        let types = [DataType::TypeInt32 as i32, DataType::TypeFp32 as i32];
        if !types.contains(&batch.data_type) {
            return Err("batch input data type must be TYPE_INT32 or TYPE_FP32".to_owned());
        }
        unknown_source(&batch.source_input)?;
    }
    for batch in &config.batch_output {
        let kind = batch_output::Kind::try_from(batch.kind)
            .map_err(|_| format!("unknown batch output kind '{}'", batch.kind))?;
        if batch.source_input.len() != 1 {
            return Err(format!(
                "batch output kind '{}' expects 1 source input, got {}",
                kind.as_str_name(),
                batch.source_input.len()
            ));
        }
        unknown_source(&batch.source_input)?;
        let mut seen = BTreeSet::new();
        for target in &batch.target_name {
            if !outputs.contains(target.as_str()) {
                return Err(format!("unknown target output name '{target}'"));
            }
            if !seen.insert(target) {
                return Err(format!("target output name '{target}' can only be specified once"));
            }
        }
    }
    Ok(())
}

/// `GetBooleanSequenceControlProperties` and `GetTypedSequenceControlProperties` for every
/// kind: each control tensor named and serving one kind, each kind once; START, END and READY
/// give exactly one list of false/true values, of 2 entries; CORRID gives none, and a type of
/// TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 or TYPE_STRING.
fn sequence_controls(sequence: &ModelSequenceBatching, name: &str) -> Result<(), String> {
    // Triton checks the kinds one after another, each over every control input.
    for kind in [
        ControlKind::ControlSequenceStart,
        ControlKind::ControlSequenceEnd,
        ControlKind::ControlSequenceReady,
        ControlKind::ControlSequenceCorrid,
    ] {
        let kind_name = kind.as_str_name();
        let mut seen_tensors = BTreeSet::new();
        let mut seen_kind = false;
        for input in &sequence.control_input {
            if input.name.is_empty() {
                return Err(format!("sequence batching control tensor must have a name for {name}"));
            }
            if !seen_tensors.insert(input.name.as_str()) {
                return Err(format!(
                    "sequence batching control tensor '{}' is specified for multiple control kinds for {name}",
                    input.name
                ));
            }
            for control in input.control.iter().filter(|c| c.kind == kind as i32) {
                if seen_kind {
                    return Err(format!("sequence batching specifies multiple {kind_name} tensors for {name}"));
                }
                seen_kind = true;
                let lists =
                    [control.int32_false_true.len(), control.fp32_false_true.len(), control.bool_false_true.len()];
                let given = lists.iter().filter(|&&n| n > 0).count();
                if kind == ControlKind::ControlSequenceCorrid {
                    if given > 0 {
                        return Err(format!(
                            "sequence batching must not specify either 'int32_false_true', 'fp32_false_true' or 'bool_false_true' for {kind_name} for {name}"
                        ));
                    }
                    let allowed = [
                        DataType::TypeUint64,
                        DataType::TypeInt64,
                        DataType::TypeUint32,
                        DataType::TypeInt32,
                        DataType::TypeString,
                    ];
                    if !allowed.iter().any(|t| *t as i32 == control.data_type) {
                        return Err(format!(
                            "unexpected data type for control {kind_name} for {name}. Allowed data types are TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 and TYPE_STRING"
                        ));
                    }
                    continue;
                }
                match given {
                    0 => {
                        return Err(format!(
                            "sequence batching must specify either 'int32_false_true', 'fp32_false_true' or 'bool_false_true' for {kind_name} for {name}"
                        ));
                    }
                    1 => {}
                    _ => {
                        return Err(format!(
                            "sequence batching specifies more than one from 'int32_false_true', 'fp32_false_true' and 'bool_false_true' for {kind_name} for {name}"
                        ));
                    }
                }
                let (field, len) = ["int32_false_true", "fp32_false_true", "bool_false_true"]
                    .into_iter()
                    .zip(lists)
                    .find(|(_, n)| *n > 0)
                    .expect("one list was given");
                if len != 2 {
                    return Err(format!(
                        "sequence batching control '{field}' must have exactly 2 entries for {kind_name} for {name}"
                    ));
                }
            }
        }
    }
    Ok(())
}
