//! The text format on the fields corral reads: each case is a text and what it reads as (the
//! message printed as JSON) or the error, in protobuf's words with line and column.

use expect_test::{Expect, expect};

#[track_caller]
fn check(text: &str, expected: Expect) {
    let shown = match corral_config::from_text(text) {
        Ok(config) => {
            let mut json = corral_config::to_json(&config);
            // Only what the text set: defaults would drown it.
            prune(&mut json);
            json.to_string()
        }
        Err(e) => format!("error: {e}"),
    };
    expected.assert_eq(&shown);
}

/// Drops default values (0, "", false, [], {}) from a printed message.
fn prune(value: &mut serde_json::Value) {
    use serde_json::Value;
    if let Value::Object(map) = value {
        for v in map.values_mut() {
            prune(v);
        }
        map.retain(|_, v| {
            !matches!(v, Value::Null)
                && v != &Value::from(0)
                && v != &Value::from("")
                && v != &Value::Bool(false)
                && v != &Value::Array(vec![])
                && !matches!(v, Value::Object(m) if m.is_empty() )
        });
    } else if let Value::Array(items) = value {
        for v in items {
            prune(v);
        }
    }
}

#[test]
fn bools_read_in_every_form_protobuf_accepts() {
    let control = |values: &str| {
        format!(
            "sequence_batching {{ control_input [ {{ name: \"R\" control [ {{ kind: CONTROL_SEQUENCE_READY bool_false_true: [ {values} ] }} ] }} ] }}"
        )
    };
    check(
        &control("0, 1"),
        expect![[
            r#"{"sequence_batching":{"control_input":[{"control":[{"bool_false_true":[false,true],"data_type":"TYPE_INVALID","kind":"CONTROL_SEQUENCE_READY"}],"name":"R"}]}}"#
        ]],
    );
    check(
        &control("f, t"),
        expect![[
            r#"{"sequence_batching":{"control_input":[{"control":[{"bool_false_true":[false,true],"data_type":"TYPE_INVALID","kind":"CONTROL_SEQUENCE_READY"}],"name":"R"}]}}"#
        ]],
    );
    check(
        &control("False, True"),
        expect![[
            r#"{"sequence_batching":{"control_input":[{"control":[{"bool_false_true":[false,true],"data_type":"TYPE_INVALID","kind":"CONTROL_SEQUENCE_READY"}],"name":"R"}]}}"#
        ]],
    );
    check(
        &control("false, true"),
        expect![[
            r#"{"sequence_batching":{"control_input":[{"control":[{"bool_false_true":[false,true],"data_type":"TYPE_INVALID","kind":"CONTROL_SEQUENCE_READY"}],"name":"R"}]}}"#
        ]],
    );
    check(&control("0, 2"), expect![[r#"error: 1:112: Integer out of range (2)"#]]);
    check(
        &control("no, yes"),
        expect![[r#"error: 1:111: Invalid value for boolean field "bool_false_true". Value: "no"."#]],
    );
}

#[test]
fn enums_read_by_name_or_number_and_unknown_names_are_refused() {
    check(
        "input [ { name: \"x\" data_type: TYPE_FP32 } ]",
        expect![[r#"{"input":[{"data_type":"TYPE_FP32","format":"FORMAT_NONE","name":"x"}]}"#]],
    );
    check(
        "input [ { name: \"x\" data_type: 11 } ]",
        expect![[r#"{"input":[{"data_type":"TYPE_FP32","format":"FORMAT_NONE","name":"x"}]}"#]],
    );
    // proto3 enums are open: a number without a name is kept.
    check("instance_group [ { kind: 7 } ]", expect![[r#"{"instance_group":[{"kind":7}]}"#]]);
    check(
        "instance_group [ { kind: KIND_TPU } ]",
        expect![[r#"error: 1:35: Unknown enumeration value of "KIND_TPU" for field "kind"."#]],
    );
    check(
        "instance_group [ { kind: \"KIND_CPU\" } ]",
        expect![[r#"error: 1:26: Expected integer or identifier, got: "KIND_CPU""#]],
    );
}

#[test]
fn repeated_fields_read_as_lists_lines_or_both() {
    check(
        "input { name: \"a\" dims: [ 1, 2 ] dims: 3 }",
        expect![[r#"{"input":[{"data_type":"TYPE_INVALID","dims":[1,2,3],"format":"FORMAT_NONE","name":"a"}]}"#]],
    );
    check(
        "input [ { name: \"a\" }, { name: \"b\" } ] input: { name: \"c\" } input < name: 'd' >",
        expect![[
            r#"{"input":[{"data_type":"TYPE_INVALID","format":"FORMAT_NONE","name":"a"},{"data_type":"TYPE_INVALID","format":"FORMAT_NONE","name":"b"},{"data_type":"TYPE_INVALID","format":"FORMAT_NONE","name":"c"},{"data_type":"TYPE_INVALID","format":"FORMAT_NONE","name":"d"}]}"#
        ]],
    );
    check("input: [ ]", expect!["{}"]);
    check("input [ { dims: [ 1 2 ] } ]", expect![[r#"error: 1:21: Expected ",", found "2"."#]]);
    check("input [ { dims: [ 1, ] } ]", expect!["error: 1:22: Expected integer, got: ]"]);
}

#[test]
fn comments_separators_and_strings_read_as_protobuf_reads_them() {
    check(
        "# a model\nname: \"m\" ; max_batch_size: 8, # eight\nplatform: 'onnx' \"runtime_onnx\"\n",
        expect![[r#"{"max_batch_size":8,"name":"m","platform":"onnxruntime_onnx"}"#]],
    );
    check("name: \"tab\\there \\x41\\101\\u00e9\"", expect![[r#"{"name":"tab\there AAé"}"#]]);
    check("name: \"open", expect!["error: 1:12: Unexpected end of string."]);
    check(
        "max_batch_size: 0x10 default_model_filename: \"m\"",
        expect![[r#"{"default_model_filename":"m","max_batch_size":16}"#]],
    );
    check("max_batch_size: 010", expect![[r#"{"max_batch_size":8}"#]]);
    check("max_batch_size: 08", expect!["error: 1:18: Numbers starting with leading zero must be in octal."]);
    check("max_batch_size: 8x", expect!["error: 1:18: Need space between number and identifier."]);
    check("max_batch_size: -3", expect![[r#"{"max_batch_size":-3}"#]]);
    check("max_batch_size: 2147483648", expect!["error: 1:17: Integer out of range (2147483648)"]);
    check("max_batch_size: -2147483648", expect![[r#"{"max_batch_size":-2147483648}"#]]);
    check("dynamic_batching { max_queue_delay_microseconds: -1 }", expect!["error: 1:50: Expected integer, got: -"]);
}

#[test]
fn floats_read_in_protobufs_forms() {
    let control = |v: &str| {
        format!("sequence_batching {{ control_input {{ name: \"s\" control {{ fp32_false_true: [ {v} ] }} }} }}")
    };
    check(
        &control("0, 1.5"),
        expect![[
            r#"{"sequence_batching":{"control_input":[{"control":[{"data_type":"TYPE_INVALID","fp32_false_true":[0.0,1.5],"kind":"CONTROL_SEQUENCE_START"}],"name":"s"}]}}"#
        ]],
    );
    check(
        &control("-2.5e1, 1f"),
        expect![[
            r#"{"sequence_batching":{"control_input":[{"control":[{"data_type":"TYPE_INVALID","fp32_false_true":[-25.0,1.0],"kind":"CONTROL_SEQUENCE_START"}],"name":"s"}]}}"#
        ]],
    );
    check(
        &control(".5, 3.F"),
        expect![[
            r#"{"sequence_batching":{"control_input":[{"control":[{"data_type":"TYPE_INVALID","fp32_false_true":[0.5,3.0],"kind":"CONTROL_SEQUENCE_START"}],"name":"s"}]}}"#
        ]],
    );
    check(
        &control("inf, -Infinity"),
        expect![[
            r#"{"sequence_batching":{"control_input":[{"control":[{"data_type":"TYPE_INVALID","fp32_false_true":["Infinity","-Infinity"],"kind":"CONTROL_SEQUENCE_START"}],"name":"s"}]}}"#
        ]],
    );
    check(&control("0x10, 1"), expect!["error: 1:76: Expect a decimal number, got: 0x10"]);
    check(&control("one, 1"), expect!["error: 1:76: Expected double, got: one"]);
}

#[test]
fn what_triton_refuses_is_refused_with_line_and_column() {
    check(
        "name: \"m\"\nmax_batch_size: 8\n\nmax_batch_sizee: 8\n",
        expect![[r#"error: 4:16: Message type "inference.ModelConfig" has no field named "max_batch_sizee"."#]],
    );
    check(
        "input [ { name: \"x\" data_type: TYPE_FP32 dim: [ 1 ] } ]",
        expect![[r#"error: 1:45: Message type "inference.ModelInput" has no field named "dim"."#]],
    );
    check("max_batch_size: \"8\"", expect![[r#"error: 1:17: Expected integer, got: "8""#]]);
    check("name: 8", expect!["error: 1:7: Expected string, got: 8"]);
    check(
        "max_batch_size: 8\nmax_batch_size: 4",
        expect![[r#"error: 2:15: Non-repeated field "max_batch_size" is specified multiple times."#]],
    );
    // A field without presence given first at its default is not "specified" yet, as in C++.
    check("max_batch_size: 0\nmax_batch_size: 4", expect![[r#"{"max_batch_size":4}"#]]);
    check(
        "version_policy { latest {} }\nversion_policy { all {} }",
        expect![[r#"error: 2:16: Non-repeated field "version_policy" is specified multiple times."#]],
    );
    check(
        "version_policy { latest {} all {} }",
        expect![[
            r#"error: 1:32: Field "all" is specified along with field "latest", another member of oneof "policy_choice"."#
        ]],
    );
    check(
        "dynamic_batching {}\nsequence_batching {}",
        expect![[
            r#"error: 2:19: Field "sequence_batching" is specified along with field "dynamic_batching", another member of oneof "scheduling_choice"."#
        ]],
    );
    check("max_batch_size 8", expect![[r#"error: 1:16: Expected ":", found "8"."#]]);
    check("input [ { name: \"x\" }", expect![[r#"error: 1:22: Expected ",", found ""."#]]);
    check("}", expect!["error: 1:1: Expected identifier, got: }"]);
    check(
        "[inference.x]: 1",
        expect![[
            r#"error: 1:13: Extension "inference.x" is not defined or is not an extension of "inference.ModelConfig"."#
        ]],
    );
}

#[test]
fn maps_read_as_key_value_messages_the_last_of_a_key_winning() {
    check(
        "parameters { key: \"a\" value { string_value: \"1\" } }\nparameters [ { key: \"b\" value: { string_value: \"2\" } }, { key: \"a\" value { string_value: \"3\" } } ]",
        expect![[r#"{"parameters":{"a":{"string_value":"3"},"b":{"string_value":"2"}}}"#]],
    );
    check(
        "cc_model_filenames { key: \"k80\" value: \"m.plan\" }",
        expect![[r#"{"cc_model_filenames":{"k80":"m.plan"}}"#]],
    );
    check("parameters { key: \"a\" value { string_value: 1 } }", expect!["error: 1:45: Expected string, got: 1"]);
}

/// A message that holds itself (`message Node { Node child = 1; }`): ModelConfig's own
/// messages nest only a few levels, so the limit is tried on this one.
fn node() -> prost_reflect::MessageDescriptor {
    use prost_types::{
        DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
        field_descriptor_proto::{Label, Type},
    };
    let child = FieldDescriptorProto {
        name: Some("child".into()),
        number: Some(1),
        label: Some(Label::Optional as i32),
        r#type: Some(Type::Message as i32),
        type_name: Some(".t.Node".into()),
        json_name: Some("child".into()),
        ..Default::default()
    };
    let file = FileDescriptorProto {
        name: Some("t.proto".into()),
        package: Some("t".into()),
        syntax: Some("proto3".into()),
        message_type: vec![DescriptorProto { name: Some("Node".into()), field: vec![child], ..Default::default() }],
        ..Default::default()
    };
    let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: vec![file] })
        .expect("a valid schema");
    pool.get_message_by_name("t.Node").expect("declared")
}

#[test]
fn nesting_past_protobufs_limit_is_refused() {
    let nested = |depth: usize| format!("{}{}", "child { ".repeat(depth), "} ".repeat(depth));
    assert!(corral_config::text::parse(node(), &nested(100)).is_ok(), "100 levels read, as protobuf reads them");
    let error = corral_config::text::parse(node(), &nested(101)).expect_err("101 levels");
    expect!["1:809: Message is too deep, the parser exceeded the configured recursion limit of 100."]
        .assert_eq(&error.to_string());
}

/// Text shaped like a `config.pbtxt`: fields, nested messages, lists, numbers and strings of
/// every form, stray brackets and bytes.
fn pbtxt_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let token = prop_oneof![
        "(name|platform|max_batch_size|dims|data_type|count|key|string_value|bool_false_true|fp32_false_true|decoupled|kind)(:| )"
            .prop_map(|s| s.to_owned()),
        "(input|output|instance_group|parameters|dynamic_batching|sequence_batching|control_input|control|value|version_policy|latest|all) ?:? ?(\\{|<|\\[)"
            .prop_map(|s| s.to_owned()),
        "[\\]}>,;:\\[{<#\\-\\n]".prop_map(|s| s.to_owned()),
        "\"[a-z._\\\\]{0,8}\"?".prop_map(|s| s.to_owned()),
        "'[\\\\xu0-9a-f]{0,6}'?".prop_map(|s| s.to_owned()),
        "-?(0x[0-9a-fA-F]{0,4}|0[0-9]{0,4}|[0-9]{1,21}(\\.[0-9]{0,3})?(e-?[0-9]{0,3})?[fF]?|\\.[0-9]{1,3})".prop_map(|s| s.to_owned()),
        "(TYPE_FP32|KIND_CPU|CONTROL_SEQUENCE_READY|true|True|t|f|inf|nan|[a-z]{1,4})".prop_map(|s| s.to_owned()),
        any::<String>(),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|tokens| tokens.join(" "))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Any text reads as a message or an error with a place inside the text, never a panic.
    #[test]
    fn any_text_reads_or_says_where_it_went_wrong(text in pbtxt_text()) {
        if let Err(error) = corral_config::from_text(&text) {
            let lines = text.split('\n').count();
            proptest::prop_assert!(error.line >= 1 && error.line <= lines && error.column >= 1, "{error} in {text:?}");
        }
    }
}
