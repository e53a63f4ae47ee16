//! A differential test against protobuf's own Python parser (`google.protobuf.text_format`, in
//! `.venv-clients` from `./scripts/setup --tests`): texts in the forms Triton's
//! configurations are written in, some with a fault injected, read by corral's reader and by
//! protobuf's from the same descriptor set. Both must accept with equal messages, or both
//! refuse.
//!
//! The texts come from a seeded generator (the same every run): the fields corral reads, each
//! written in one of the forms protobuf accepts (bools `true/True/t/1` and their opposites,
//! enums by name or number, lists with or without the colon, repeated lines, `;`/`,` after a
//! field, comments), and in one text of three a fault (an unknown field, a value of the wrong
//! type, a singular field twice, two members of a oneof).

use std::path::Path;

use base64::Engine as _;
use prost::Message as _;

/// xorshift64*: enough to vary the texts, the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[self.below(options.len())]
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

fn boolean(rng: &mut Rng, value: bool) -> &'static str {
    if value { rng.pick(&["true", "True", "t", "1"]) } else { rng.pick(&["false", "False", "f", "0"]) }
}

fn string(rng: &mut Rng, text: &str) -> String {
    if rng.chance(2) { format!("\"{text}\"") } else { format!("'{text}'") }
}

/// A list of scalars in one of its forms: `f: [a, b]`, or one `f: a` line each.
fn scalars(rng: &mut Rng, field: &str, values: &[String]) -> String {
    if rng.chance(2) {
        format!("{field}: [ {} ]", values.join(", "))
    } else {
        values.iter().map(|v| format!("{field}: {v}")).collect::<Vec<_>>().join(" ")
    }
}

/// Messages of a repeated field in one of their forms: `f [ {..}, {..} ]`, `f: [..]`, or one
/// `f {..}` / `f: {..}` / `f <..>` each.
fn messages(rng: &mut Rng, field: &str, bodies: &[String]) -> String {
    match rng.below(3) {
        0 => {
            let colon = if rng.chance(2) { ":" } else { "" };
            let items: Vec<String> = bodies.iter().map(|b| format!("{{ {b} }}")).collect();
            format!("{field}{colon} [ {} ]", items.join(", "))
        }
        _ => bodies
            .iter()
            .map(|b| match rng.below(3) {
                0 => format!("{field} {{ {b} }}"),
                1 => format!("{field}: {{ {b} }}"),
                _ => format!("{field} < {b} >"),
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn data_type(rng: &mut Rng) -> String {
    let (name, number) = [("TYPE_FP32", 11), ("TYPE_INT64", 9), ("TYPE_STRING", 13), ("TYPE_BOOL", 1)][rng.below(4)];
    if rng.chance(3) { number.to_string() } else { name.to_owned() }
}

fn tensor(rng: &mut Rng, name: &str, input: bool) -> String {
    let dims: Vec<String> =
        (0..1 + rng.below(3)).map(|_| rng.pick(&["-1", "1", "3", "224", "0x10"]).to_owned()).collect();
    let mut fields = vec![
        format!("name: {}", string(rng, name)),
        format!("data_type: {}", data_type(rng)),
        scalars(rng, "dims", &dims),
    ];
    if input {
        if rng.chance(2) {
            fields.push(format!("format: {}", rng.pick(&["FORMAT_NONE", "FORMAT_NCHW", "2"])));
        }
        if rng.chance(2) {
            fields.push(format!("optional: {}", any_boolean(rng)));
        }
    } else if rng.chance(3) {
        fields.push(format!("label_filename: {}", string(rng, "labels.txt")));
    }
    fields.join(" ")
}

/// A bool of either value, in any of its forms.
fn any_boolean(rng: &mut Rng) -> &'static str {
    let value = rng.chance(2);
    boolean(rng, value)
}

/// A sequence batcher's controls: the form Triton's generators write them in.
fn sequence(rng: &mut Rng) -> String {
    let control = |rng: &mut Rng, kind: &str| -> String {
        let kind_text = match (kind, rng.chance(3)) {
            ("CONTROL_SEQUENCE_START", true) => "0".to_owned(),
            ("CONTROL_SEQUENCE_READY", true) => "1".to_owned(),
            ("CONTROL_SEQUENCE_END", true) => "2".to_owned(),
            _ => kind.to_owned(),
        };
        let values = match rng.below(3) {
            0 => scalars(rng, "int32_false_true", &["0".into(), "1".into()]),
            1 => {
                let one = rng.pick(&["1", "1.0", "1f", "1e0"]).to_owned();
                scalars(rng, "fp32_false_true", &["0".into(), one])
            }
            _ => {
                let pair = [boolean(rng, false).to_owned(), boolean(rng, true).to_owned()];
                scalars(rng, "bool_false_true", &pair)
            }
        };
        format!("kind: {kind_text} {values}")
    };
    let mut inputs = Vec::new();
    for flag in ["START", "READY", "END"] {
        if rng.chance(4) {
            continue;
        }
        let body = control(rng, &format!("CONTROL_SEQUENCE_{flag}"));
        inputs.push(format!("name: \"{flag}\" {}", messages(rng, "control", &[body])));
    }
    let strategy = rng.pick(&["direct { }", "oldest { max_candidate_sequences: 4 }", ""]);
    format!(
        "max_sequence_idle_microseconds: {} {} {strategy}",
        rng.pick(&["5000000", "0", "1000000"]),
        messages(rng, "control_input", &inputs)
    )
}

/// One generated configuration, or with a fault injected.
fn config(rng: &mut Rng) -> String {
    let mut fields = vec![format!("name: {}", string(rng, "m"))];
    if rng.chance(2) {
        fields.push(format!("platform: {}", string(rng, "onnxruntime_onnx")));
    } else {
        fields.push(format!("backend: {}", string(rng, "onnxruntime")));
    }
    fields.push(format!("max_batch_size: {}", rng.pick(&["0", "8", "0x10", "010", "-1"])));
    let inputs: Vec<String> = (0..1 + rng.below(2)).map(|i| tensor(rng, &format!("INPUT{i}"), true)).collect();
    fields.push(messages(rng, "input", &inputs));
    let outputs: Vec<String> = (0..1 + rng.below(2)).map(|i| tensor(rng, &format!("OUTPUT{i}"), false)).collect();
    fields.push(messages(rng, "output", &outputs));
    if rng.chance(2) {
        let kind = rng.pick(&["KIND_CPU", "KIND_AUTO", "2", "KIND_MODEL"]);
        let group = format!("count: {} kind: {kind}", rng.pick(&["1", "2", "4"]));
        fields.push(messages(rng, "instance_group", &[group]));
    }
    match rng.below(4) {
        0 => fields.push(format!("version_policy: {{ latest {{ num_versions: {} }} }}", rng.pick(&["1", "2"]))),
        1 => fields.push("version_policy { all { } }".to_owned()),
        2 => fields.push(format!(
            "version_policy {{ specific {{ {} }} }}",
            scalars(rng, "versions", &["1".into(), "3".into()])
        )),
        _ => {}
    }
    match rng.below(4) {
        0 => fields.push(format!(
            "dynamic_batching {{ max_queue_delay_microseconds: {} {} preserve_ordering: {} }}",
            rng.pick(&["0", "100", "0x64"]),
            scalars(rng, "preferred_batch_size", &["4".into(), "8".into()]),
            any_boolean(rng)
        )),
        1 => fields.push(format!("sequence_batching {{ {} }}", sequence(rng))),
        2 => fields.push(
            "ensemble_scheduling { step [ { model_name: \"a\" model_version: -1 input_map { key: \"x\" value: \"X\" } output_map { key: \"y\" value: \"Y\" } } ] }"
                .to_owned(),
        ),
        _ => {}
    }
    if rng.chance(2) {
        let mut params = Vec::new();
        for key in ["corral.cores", "corral.elastic", "EXECUTION_ENV_PATH"] {
            if rng.chance(2) {
                let value = rng.pick(&["1", "true", "$$TRITON_MODEL_DIRECTORY/env.tar.gz"]);
                params.push(format!("key: \"{key}\" value {{ string_value: \"{value}\" }}"));
            }
        }
        fields.push(messages(rng, "parameters", &params));
    }
    if rng.chance(3) {
        fields.push(format!("model_transaction_policy {{ decoupled: {} }}", any_boolean(rng)));
    }
    if rng.chance(3) {
        fields.push(format!("default_model_filename: {}", string(rng, "model.onnx")));
    }
    if rng.chance(3) {
        // A fault: each is refused by protobuf's parsers.
        let fault = match rng.below(6) {
            0 => "max_batch_sizee: 8".to_owned(),
            1 => "input { name: \"Z\" dim: [ 1 ] }".to_owned(),
            2 => rng
                .pick(&[
                    "max_batch_size: \"8\"",
                    "name: 8",
                    "model_transaction_policy { decoupled: maybe }",
                    "input { data_type: TYPE_FP33 }",
                ])
                .to_owned(),
            3 => "max_batch_size: 4".to_owned(),
            4 => "version_policy { latest { } all { } }".to_owned(),
            _ => "dynamic_batching { } sequence_batching { }".to_owned(),
        };
        let at = rng.below(fields.len() + 1);
        fields.insert(at, fault);
    }
    let mut text = String::new();
    for field in fields {
        if rng.chance(5) {
            text += "# a comment, as Triton's generators leave them\n";
        }
        text += &field;
        text += rng.pick(&["", " ;", " ,", ""]);
        text += rng.pick(&["\n", " ", "\n\n", "\t"]);
    }
    text
}

#[test]
fn corral_and_protobufs_python_parser_accept_and_refuse_the_same_texts() {
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = project.join(".venv-clients/bin/python");
    let dir = tempfile::tempdir().expect("dir");
    let descriptors = dir.path().join("model_config.bin");
    std::fs::write(&descriptors, corral_config::FILE_DESCRIPTOR_SET).expect("write descriptors");
    let mut rng = Rng(0x5eed_c0ff_ee15_600d);
    let texts: Vec<String> = (0..400).map(|_| config(&mut rng)).collect();
    let texts_path = dir.path().join("texts.json");
    std::fs::write(&texts_path, serde_json::to_vec(&texts).expect("json")).expect("write texts");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/text_format_peer.py");
    let output = std::process::Command::new(&python)
        .args([&script, &descriptors, &texts_path])
        .output()
        .unwrap_or_else(|e| panic!("{} runs ({e}); ./scripts/setup --tests makes it", python.display()));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let answers: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).expect("the peer prints JSON");
    assert_eq!(answers.len(), texts.len());
    let (mut accepted, mut refused) = (0, 0);
    for (text, answer) in texts.iter().zip(&answers) {
        let ours = corral_config::from_text(text);
        match (&ours, answer.get("ok").and_then(|v| v.as_str())) {
            (Ok(ours), Some(theirs)) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(theirs).expect("base64");
                let theirs = corral_config::ModelConfig::decode(bytes.as_slice()).expect("protobuf's bytes decode");
                assert_eq!(ours, &theirs, "the two read this text differently:\n{text}");
                accepted += 1;
            }
            (Err(_), None) => refused += 1,
            (Ok(_), None) => panic!("corral accepts what protobuf refuses ({}):\n{text}", answer["error"]),
            (Err(e), Some(_)) => panic!("corral refuses what protobuf accepts ({e}):\n{text}"),
        }
    }
    // Both kinds are exercised, so agreeing cannot pass by accident.
    assert!(accepted >= 150 && refused >= 80, "accepted {accepted}, refused {refused}");
}
