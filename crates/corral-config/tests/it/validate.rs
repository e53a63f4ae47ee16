//! The cases of Triton's `qa/L0_model_config` that apply to an ONNX model (its
//! `noautofill_platform` folders, and `special_cases/invalid_platform`), each read and checked
//! here: the configuration as the case gives it (with `platform: "onnxruntime_onnx"`, as its
//! test script appends) and the text its `expected` file holds, which the load's error must
//! contain. The ensemble cases belong to the pipelines.

/// Each case: its folder name (the model's name), the configuration, what Triton says.
const CASES: &[(&str, &str, &str)] = &[
    (
        "negative_max_batch_size",
        "max_batch_size: -2 input [ { name: \"input\" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 1, 28, 28 ] } ] output [ { name: \"prob\" data_type: TYPE_FP32 dims: [ 10, 1, 1 ] } ]",
        "'max_batch_size' must be non-negative value for negative_max_batch_size",
    ),
    (
        "missing_datatype",
        "max_batch_size: 4 input [ { name: \"input\" dims: [ 2, -1 ] } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 1 ] } ]",
        "model input 'input' must specify 'data_type'",
    ),
    (
        "zerodims_input0",
        "max_batch_size: 8 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 1, 0, 28 ] } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 1 ] } ]",
        "model input 'input' dimension must be integer >= 1, or -1 to indicate a variable-size dimension for zerodims_input0",
    ),
    (
        "zerodims_input1",
        "max_batch_size: 8 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 0 ] } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 1 ] } ]",
        "model input 'input' dimension must be integer >= 1, or -1 to indicate a variable-size dimension for zerodims_input1",
    ),
    (
        "zerodims_output0",
        "max_batch_size: 8 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 1 ] } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 1, 1, 0 ] } ]",
        "model output 'output' dimension must be integer >= 1, or -1 to indicate a variable-size dimension for zerodims_output0",
    ),
    (
        "zerodims_output1",
        "max_batch_size: 8 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 1 ] } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 0 ] } ]",
        "model output 'output' dimension must be integer >= 1, or -1 to indicate a variable-size dimension for zerodims_output1",
    ),
    (
        "reshape_zerodims0",
        "max_batch_size: 4 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 2, 2 ] reshape { shape: [ 0 ] } } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 4 ] } ]",
        "model input 'input' reshape dimensions must be integer >= 1, or -1 to indicate a variable-size dimension for reshape_zerodims0",
    ),
    (
        "reshape_nobatch_zerodims1",
        "max_batch_size: 0 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 4 ] } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 2, 2 ] reshape { shape: [ 0 ] } } ]",
        "model output 'output' reshape dimensions must be integer >= 1, or -1 to indicate a variable-size dimension for reshape_nobatch_zerodims1",
    ),
    (
        "reshape_elementcount0",
        "max_batch_size: 4 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 1, 3, 2 ] reshape { shape: [ 5 ] } } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 6 ] } ]",
        "model input 'input' has different size for dims and reshape for reshape_elementcount0",
    ),
    (
        "reshape_elementcount1",
        "max_batch_size: 4 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 15 ] reshape { shape: [ 2, 1, 5 ] } } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 15 ] } ]",
        "model input 'input' has different size for dims and reshape for reshape_elementcount1",
    ),
    (
        "reshape_elementcount2",
        "max_batch_size: 4 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 6 ] } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 1, 3, 2 ] reshape { shape: [ 3 ] } } ]",
        "model output 'output' has different size for dims and reshape for reshape_elementcount2",
    ),
    (
        "reshape_elementcount3",
        "max_batch_size: 4 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 15 ] } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 15 ] reshape { shape: [ 3, 2, 5 ] } } ]",
        "model output 'output' has different size for dims and reshape for reshape_elementcount3",
    ),
    (
        "reshape_variable0",
        "max_batch_size: 4 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 2, -1 ] reshape { shape: [ 2, 2 ] } } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 4 ] } ]",
        "model input 'input' has different size for dims and reshape for reshape_variable0",
    ),
    (
        "reshape_nobatch_variable1",
        "max_batch_size: 0 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 4 ] } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 2, -1 ] reshape { shape: [ 2, 2 ] } } ]",
        "model output 'output' has different size for dims and reshape for reshape_nobatch_variable1",
    ),
    (
        "reshape_variable2",
        "max_batch_size: 4 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 2, -1 ] reshape { shape: [ 2, -1, 2 ] } } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 4 ] } ]",
        "model input 'input' has different size for dims and reshape for reshape_variable2",
    ),
    (
        "reshape_variable3",
        "max_batch_size: 4 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 4 ] } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 2, -1 ] reshape { shape: [ 1, -1, 2 ] } } ]",
        "model output 'output' has different size for dims and reshape for reshape_variable3",
    ),
    (
        "reshape_variable4",
        "max_batch_size: 4 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 2, -1 ] reshape { shape: [ 2, -1, -1 ] } } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 4 ] } ]",
        "model input 'input' has different number of variable-size dimensions for dims and reshape for reshape_variable4",
    ),
    (
        "reshape_nobatch_variable5",
        "max_batch_size: 0 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 4 ] } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 2, -1 ] reshape { shape: [ 2, -1, -1 ] } } ]",
        "model output 'output' has different number of variable-size dimensions for dims and reshape for reshape_nobatch_variable5",
    ),
    (
        "reshape_nobatch_empty0",
        "max_batch_size: 0 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 1 ] } ]",
        "model input 'input' cannot have empty reshape for non-batching model as scalar tensors are not supported for reshape_nobatch_empty0",
    ),
    (
        "reshape_nobatch_empty1",
        "max_batch_size: 0 input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 1 ] } ] output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } } ]",
        "model output 'output' cannot have empty reshape for non-batching model as scalar tensors are not supported for reshape_nobatch_empty1",
    ),
    (
        "default_priority_level0",
        "max_batch_size: 8 dynamic_batching { priority_levels: 3 }",
        "default priority level must be in range [1, 3] for default_priority_level0",
    ),
    (
        "default_priority_level1",
        "max_batch_size: 8 dynamic_batching { priority_levels: 3 default_priority_level: 5 }",
        "default priority level must be in range [1, 3] for default_priority_level1",
    ),
    (
        "priority_level0",
        "max_batch_size: 8 dynamic_batching { priority_levels: 3 default_priority_level: 2 priority_queue_policy { key: 0 value: { } } }",
        "priority queue policy must have priority level in range [1, 3] for priority_level0",
    ),
    (
        "priority_level1",
        "max_batch_size: 8 dynamic_batching { priority_levels: 3 default_priority_level: 2 priority_queue_policy { key: 4 value: { } } }",
        "priority queue policy must have priority level in range [1, 3] for priority_level1",
    ),
    (
        "preserve_ordering0",
        "max_batch_size: 8 dynamic_batching { preserve_ordering: true priority_levels: 3 default_priority_level: 2 priority_queue_policy { key: 1 value: { } } }",
        "Only one priority level is allowed when 'preserve_ordering' is true for preserve_ordering0",
    ),
    (
        "preserve_ordering1",
        "max_batch_size: 8 dynamic_batching { preserve_ordering: true default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 1000 } }",
        "Queue policy can not have DELAY as timeout action when 'preserve_ordering' is true for preserve_ordering1",
    ),
    (
        "preserve_ordering2",
        "max_batch_size: 8 dynamic_batching { preserve_ordering: true priority_levels: 1 default_priority_level: 1 priority_queue_policy { key: 1 value: { timeout_action: DELAY default_timeout_microseconds: 1000 } } }",
        "Queue policy can not have DELAY as timeout action when 'preserve_ordering' is true for preserve_ordering2",
    ),
    (
        "control_kind_start_multiple",
        "max_batch_size: 8 sequence_batching { control_input [ { name: \"START\" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] }, { name: \"READY\" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] } ] }",
        "sequence batching specifies multiple CONTROL_SEQUENCE_START tensors for control_kind_start_multiple",
    ),
    (
        "control_kind_end_multiple",
        "max_batch_size: 8 sequence_batching { control_input [ { name: \"END\" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] }, { name: \"READY\" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] } ] }",
        "sequence batching specifies multiple CONTROL_SEQUENCE_END tensors for control_kind_end_multiple",
    ),
    (
        "control_kind_ready_multiple",
        "max_batch_size: 8 sequence_batching { control_input [ { name: \"START\" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] }, { name: \"READY\" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] } ] }",
        "sequence batching specifies multiple CONTROL_SEQUENCE_READY tensors for control_kind_ready_multiple",
    ),
    (
        "control_tensor_multiple",
        "max_batch_size: 8 sequence_batching { control_input [ { name: \"START\" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] }, { name: \"START\" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] } ] }",
        "sequence batching control tensor 'START' is specified for multiple control kinds for control_tensor_multiple",
    ),
    (
        "control_tensor_no_value",
        "max_batch_size: 8 sequence_batching { control_input [ { name: \"READY\" control [ { kind: CONTROL_SEQUENCE_READY } ] } ] }",
        "sequence batching must specify either 'int32_false_true', 'fp32_false_true' or 'bool_false_true' for CONTROL_SEQUENCE_READY for control_tensor_no_value",
    ),
    (
        "invalid_cpu",
        "max_batch_size: 8 instance_group [ { kind: KIND_CPU gpus: [ 0 ] } ]",
        "instance group invalid_cpu_0 of model invalid_cpu has kind KIND_CPU but specifies one or more GPU",
    ),
    (
        "ensemble_scheduling_set",
        "max_batch_size: 8 ensemble_scheduling { step [ { model_name: \"a\" model_version: -1 } ] }",
        "ensemble scheduling cannot be set for model 'ensemble_scheduling_set' whose platform is not ensemble",
    ),
    (
        "batch_input_less_source0",
        "max_batch_size: 8 input [ { name: \"INPUT\" data_type: TYPE_FP32 dims: [ 4 ] } ] batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: \"BATCH_INPUT\" data_type: TYPE_FP32 } ]",
        "batch input kind 'BATCH_ELEMENT_COUNT' expects 1 source input, got 0",
    ),
    (
        "batch_input_less_source3",
        "max_batch_size: 8 input [ { name: \"INPUT\" data_type: TYPE_FP32 dims: [ 4 ] } ] batch_input [ { kind: BATCH_MAX_ELEMENT_COUNT_AS_SHAPE target_name: \"BATCH_INPUT\" data_type: TYPE_FP32 } ]",
        "batch input kind 'BATCH_MAX_ELEMENT_COUNT_AS_SHAPE' expects 1 source input, got 0",
    ),
    (
        "batch_input_many_source1",
        "max_batch_size: 8 input [ { name: \"INPUT\" data_type: TYPE_FP32 dims: [ 4 ] } ] batch_input [ { kind: BATCH_ACCUMULATED_ELEMENT_COUNT target_name: \"BATCH_INPUT\" data_type: TYPE_FP32 source_input: [ \"INPUT\", \"INPUT\" ] } ]",
        "batch input kind 'BATCH_ACCUMULATED_ELEMENT_COUNT' expects 1 source input, got 2",
    ),
    (
        "batch_input_unknown_source",
        "max_batch_size: 8 input [ { name: \"INPUT\" data_type: TYPE_FP32 dims: [ 4 ] } ] batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: \"BATCH_INPUT\" data_type: TYPE_FP32 source_input: \"UNKNOWN_INPUT\" } ]",
        "unknown source input name 'UNKNOWN_INPUT'",
    ),
    (
        "batch_output_less_source",
        "max_batch_size: 8 input [ { name: \"INPUT\" data_type: TYPE_FP32 dims: [ 4 ] } ] output [ { name: \"OUTPUT\" data_type: TYPE_FP32 dims: [ 4 ] } ] batch_output [ { target_name: \"OUTPUT\" kind: BATCH_SCATTER_WITH_INPUT_SHAPE } ]",
        "batch output kind 'BATCH_SCATTER_WITH_INPUT_SHAPE' expects 1 source input, got 0",
    ),
    (
        "batch_output_many_source",
        "max_batch_size: 8 input [ { name: \"INPUT\" data_type: TYPE_FP32 dims: [ 4 ] } ] output [ { name: \"OUTPUT\" data_type: TYPE_FP32 dims: [ 4 ] } ] batch_output [ { target_name: \"OUTPUT\" kind: BATCH_SCATTER_WITH_INPUT_SHAPE source_input: [ \"INPUT\", \"INPUT\" ] } ]",
        "batch output kind 'BATCH_SCATTER_WITH_INPUT_SHAPE' expects 1 source input, got 2",
    ),
    (
        "batch_output_unknown_source",
        "max_batch_size: 8 input [ { name: \"INPUT\" data_type: TYPE_FP32 dims: [ 4 ] } ] output [ { name: \"OUTPUT\" data_type: TYPE_FP32 dims: [ 4 ] } ] batch_output [ { target_name: \"OUTPUT\" kind: BATCH_SCATTER_WITH_INPUT_SHAPE source_input: \"UNKNOWN_INPUT\" } ]",
        "unknown source input name 'UNKNOWN_INPUT'",
    ),
    (
        "batch_output_unknown_target",
        "max_batch_size: 8 input [ { name: \"INPUT\" data_type: TYPE_FP32 dims: [ 4 ] } ] output [ { name: \"OUTPUT\" data_type: TYPE_FP32 dims: [ 4 ] } ] batch_output [ { target_name: \"UNKNOWN_OUTPUT\" kind: BATCH_SCATTER_WITH_INPUT_SHAPE source_input: \"INPUT\" } ]",
        "unknown target output name 'UNKNOWN_OUTPUT'",
    ),
    (
        "batch_output_duplicated_target",
        "max_batch_size: 8 input [ { name: \"INPUT\" data_type: TYPE_FP32 dims: [ 4 ] } ] output [ { name: \"OUTPUT\" data_type: TYPE_FP32 dims: [ 4 ] } ] batch_output [ { target_name: [ \"OUTPUT\", \"OUTPUT\" ] kind: BATCH_SCATTER_WITH_INPUT_SHAPE source_input: \"INPUT\" } ]",
        "target output name 'OUTPUT' can only be specified once",
    ),
];

#[test]
fn tritons_model_config_cases_fail_as_its_expected_files_say() {
    let mut wrong = Vec::new();
    for (case, config, expected) in CASES {
        let text = format!("name: \"{case}\"\n{config}\nplatform: \"onnxruntime_onnx\"\n");
        let config = corral_config::from_text(&text).unwrap_or_else(|e| panic!("{case} reads: {e}"));
        match corral_config::validate(&config, case, "onnxruntime") {
            Err(error) if error.contains(expected) => {}
            other => wrong.push(format!("{case}: {other:?}, expected {expected:?}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_valid_configuration_passes_and_the_platform_must_match_the_backend() {
    let good = "name: \"m\" platform: \"onnxruntime_onnx\" max_batch_size: 8 input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 2, -1 ] reshape { shape: [ 1, 2, -1 ] } } ] output [ { name: \"y\" data_type: TYPE_FP32 dims: [ -1 ] } ] dynamic_batching { preferred_batch_size: [ 4, 8 ] } instance_group [ { count: 2 kind: KIND_CPU } ]";
    let config = corral_config::from_text(good).expect("reads");
    assert_eq!(corral_config::validate(&config, "m", "onnxruntime"), Ok(()));
    // special_cases/invalid_platform: the backend comes from the model file name.
    let config =
        corral_config::from_text("platform: \"onnxruntim\" default_model_filename: \"model.onnx\"").expect("reads");
    assert_eq!(
        corral_config::validate(&config, "invalid_platform", "onnxruntime"),
        Err("unexpected 'platform' and 'backend' pair, got:onnxruntim, onnxruntime".to_owned())
    );
}
