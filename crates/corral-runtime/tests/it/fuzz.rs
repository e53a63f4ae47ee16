//! Fuzzing the model folder readers with a fixed, large case count: any `config.toml` or
//! `config.pbtxt` text, random or shaped like the real thing, gives a model or an error that
//! names the folder, never a panic.

use corral_runtime::repository;
use proptest::prelude::*;

/// Lines shaped like a `config.toml`, in any order and with any values.
fn toml_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("platform = \"sim\"".to_owned()),
        Just("platform = \"onnx\"".to_owned()),
        "cores = -?[0-9]{1,20}".prop_map(|s| s.to_owned()),
        "(start|count|group) = (-?[0-9]{1,12}|\"all\"|true)".prop_map(|s| s.to_owned()),
        Just("[sim]".to_owned()),
        "latency_ms = -?[0-9]{1,6}(\\.[0-9]{1,3})?".prop_map(|s| s.to_owned()),
        "switch_ms = -?[0-9e]{1,6}".prop_map(|s| s.to_owned()),
        Just("[[input]]".to_owned()),
        Just("[[output]]".to_owned()),
        "name = \"[a-z]{0,3}\"".prop_map(|s| s.to_owned()),
        "datatype = \"(FP32|INT64|BYTES|NOPE)\"".prop_map(|s| s.to_owned()),
        "shape = \\[(-?[0-9]{1,12}, ?){0,4}\\]".prop_map(|s| s.to_owned()),
        any::<String>(),
    ];
    prop::collection::vec(line, 0..16).prop_map(|lines| lines.join("\n"))
}

/// Text shaped like a `config.pbtxt`: fields, nested messages, lists, stray brackets.
fn pbtxt_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        "(name|platform|backend|max_batch_size|dims|data_type|count|key|string_value): ".prop_map(|s| s.to_owned()),
        "(input|output|instance_group|parameters|dynamic_batching|value) \\{".prop_map(|s| s.to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        "\"[a-z._]{0,8}\"".prop_map(|s| s.to_owned()),
        "-?[0-9]{1,21}".prop_map(|s| s.to_owned()),
        "(TYPE_FP32|TYPE_STRING|KIND_CPU|onnxruntime_onnx|corral\\.(cores|start|count|group))"
            .prop_map(|s| s.to_owned()),
        any::<String>(),
    ];
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_config_toml_reads_or_names_the_folder(text in toml_text()) {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("config.toml"), &text).expect("write");
        if let Err(error) = repository::read_folder(dir.path()) {
            prop_assert!(error.to_string().contains(&*dir.path().to_string_lossy()), "{}", error);
        }
    }

    #[test]
    fn any_config_pbtxt_reads_or_names_the_folder(text in pbtxt_text(), model in any::<bool>()) {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("config.pbtxt"), &text).expect("write");
        if model {
            std::fs::create_dir_all(dir.path().join("1")).expect("mkdir");
            std::fs::write(dir.path().join("1/model.onnx"), b"not read by the folder reader").expect("write");
        }
        if let Err(error) = repository::read_folder(dir.path()) {
            prop_assert!(error.to_string().contains(&*dir.path().to_string_lossy()), "{}", error);
        }
    }
}
