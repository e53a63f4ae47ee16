//! A JSON Schema checker for the keywords `schemas/*.json` use (type, properties,
//! patternProperties, required, additionalProperties, propertyNames.pattern, items, minimum,
//! maximum, local `$ref`). A keyword it does not know fails the test, so the schema cannot say
//! more than is checked.
//!
//! Then `schemas/monitor-report.json` against neuron-monitor's documentation: the guide's own
//! report passes it, and the schema requires every field the guide documents, allows no other
//! but corral's `corral_*` ones, and those not where consumers iterate an object's keys.

use std::path::Path;

use serde_json::Value;

/// Every place `value` breaks `schema` (rooted at `root` for `$ref`), as `path: why`.
pub(super) fn violations(root: &Value, schema: &Value, value: &Value, path: &str) -> Vec<String> {
    let mut found = Vec::new();
    check(root, schema, value, path, &mut found);
    found
}

/// `schemas/monitor-report.json`.
pub(super) fn monitor_schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/monitor-report.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("schema is JSON")
}

fn check(root: &Value, schema: &Value, value: &Value, path: &str, found: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        found.push(format!("{path}: the schema here is not an object"));
        return;
    };
    let patterns: Vec<(regex::Regex, &Value)> = schema
        .get("patternProperties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(pattern, sub)| (regex::Regex::new(pattern).expect("valid pattern"), sub))
        .collect();
    for (keyword, rule) in schema {
        match keyword.as_str() {
            "$schema" | "$id" | "title" | "description" | "$defs" => {}
            "$ref" => {
                let name = rule.as_str().and_then(|r| r.strip_prefix("#/$defs/")).expect("local $ref");
                check(root, &root["$defs"][name], value, path, found);
            }
            "type" => {
                let allowed: Vec<&str> = match rule {
                    Value::String(one) => vec![one.as_str()],
                    Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                    _ => panic!("{path}: bad type rule"),
                };
                if !allowed.iter().any(|t| is_type(value, t)) {
                    found.push(format!("{path}: {value} is not {}", allowed.join(" or ")));
                }
            }
            "required" => {
                for name in rule.as_array().expect("required is a list").iter().filter_map(Value::as_str) {
                    if value.is_object() && value.get(name).is_none() {
                        found.push(format!("{path}: `{name}` is missing"));
                    }
                }
            }
            "properties" => {
                for (name, sub) in rule.as_object().expect("properties is an object") {
                    if let Some(field) = value.get(name) {
                        check(root, sub, field, &format!("{path}.{name}"), found);
                    }
                }
            }
            "patternProperties" => {
                for (name, field) in value.as_object().into_iter().flatten() {
                    for (_, sub) in patterns.iter().filter(|(pattern, _)| pattern.is_match(name)) {
                        check(root, sub, field, &format!("{path}.{name}"), found);
                    }
                }
            }
            "additionalProperties" => {
                let known = schema.get("properties").and_then(Value::as_object);
                for (name, field) in value.as_object().into_iter().flatten() {
                    let matched = patterns.iter().any(|(pattern, _)| pattern.is_match(name));
                    if matched || known.is_some_and(|k| k.contains_key(name)) {
                        continue;
                    }
                    match rule {
                        Value::Bool(false) => found.push(format!("{path}: `{name}` is not allowed")),
                        Value::Bool(true) => {}
                        sub => check(root, sub, field, &format!("{path}.{name}"), found),
                    }
                }
            }
            "propertyNames" => {
                let pattern = rule["pattern"].as_str().expect("propertyNames has a pattern");
                let pattern = regex::Regex::new(pattern).expect("valid pattern");
                for name in value.as_object().into_iter().flat_map(|o| o.keys()) {
                    if !pattern.is_match(name) {
                        found.push(format!("{path}: key `{name}` does not match {pattern}"));
                    }
                }
            }
            "items" => {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    check(root, rule, item, &format!("{path}[{i}]"), found);
                }
            }
            "minimum" | "maximum" => {
                let (Some(bound), Some(number)) = (rule.as_f64(), value.as_f64()) else { continue };
                let broken = if keyword == "minimum" { number < bound } else { number > bound };
                if broken {
                    found.push(format!("{path}: {number} is past the {keyword} {bound}"));
                }
            }
            other => panic!("{path}: the schema uses `{other}`, which this checker does not know"),
        }
    }
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_u64() || value.is_i64(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unknown type {other}"),
    }
}

#[test]
fn the_checker_finds_what_breaks_a_schema() {
    let schema = serde_json::json!({
        "type": "object",
        "required": ["a"],
        "additionalProperties": false,
        "patternProperties": { "^x_": { "type": "string" } },
        "properties": {
            "a": { "$ref": "#/$defs/n" },
            "m": { "type": "object", "propertyNames": { "pattern": "^[0-9]+$" } },
            "o": { "type": ["null", "object"], "required": ["p"], "additionalProperties": false, "properties": { "p": {} } }
        },
        "$defs": { "n": { "type": "integer", "minimum": 0 } }
    });
    let ok = serde_json::json!({"a": 1, "m": {"0": 1}, "x_y": "z", "o": null});
    assert!(violations(&schema, &schema, &ok, "$").is_empty());
    let bad = serde_json::json!({"a": -1, "b": 0, "m": {"x": 1}, "x_y": 2, "o": {"q": 1}});
    expect_test::expect![[r#"
        $: `b` is not allowed
        $.x_y: 2 is not string
        $.a: -1 is past the minimum 0
        $.m: key `x` does not match ^[0-9]+$
        $.o: `q` is not allowed
        $.o: `p` is missing"#]]
    .assert_eq(&violations(&schema, &schema, &bad, "$").join("\n"));
    assert_eq!(violations(&schema, &schema, &serde_json::json!({}), "$"), vec!["$: `a` is missing"]);
}

/// The report the neuron-monitor user guide documents (aws-neuron-sdk
/// `tools/neuron-sys-tools/neuron-monitor-user-guide.rst`, Neuron 2.30): its per-group
/// examples put together, with the guide's typos resolved (`"neuron_runtime_tag": "my_app_1"`,
/// `loaded_models` beside `neuron_runtime_used_bytes`, `neuron_k8s_info` closed), lists cut to
/// the entries shown.
pub(super) const DOCUMENTED_REPORT: &str = r#"{
  "neuron_runtime_data": [
    {
      "pid": 0,
      "address": "",
      "neuron_runtime_tag": "my_app_1",
      "error": "",
      "report": {
        "neuroncore_counters": {
          "period": 1.000113182,
          "neuroncores_in_use": {
            "0": {
              "neuroncore_utilization": 42.01,
              "flops": 1234567891011,
              "v3d": {
                "nc_v3.0": {"neuroncore_utilization": 21.01},
                "nc_v3.1": {"neuroncore_utilization": 63.01}
              }
            },
            "1": {
              "neuroncore_utilization": 42.02,
              "flops": 1234567891021,
              "v3d": {
                "nc_v3.2": {"neuroncore_utilization": 21.02},
                "nc_v3.3": {"neuroncore_utilization": 63.02}
              }
            }
          },
          "error": ""
        },
        "execution_stats": {
          "period": 1.030613214,
          "error_summary": {"generic": 0, "numerical": 0, "transient": 0, "model": 0, "runtime": 0, "hardware": 0},
          "execution_summary": {"completed": 123, "completed_with_err": 0, "completed_with_num_err": 0, "timed_out": 0, "incorrect_input": 0, "failed_to_queue": 0},
          "latency_stats": {
            "total_latency": {"p0": 0.01100001, "p1": 0.01100002, "p25": 0.01100004, "p50": 0.01100008, "p75": 0.0110001, "p99": 0.01100012, "p100": 0.01100013},
            "device_latency": {"p0": 0.01000001, "p1": 0.01000002, "p25": 0.01000004, "p50": 0.01000008, "p75": 0.0100001, "p99": 0.01000012, "p100": 0.01000013}
          },
          "error": ""
        },
        "memory_used": {
          "period": 1.00001,
          "neuron_runtime_used_bytes": {
            "host": 6997643264,
            "neuron_device": 12519788544,
            "usage_breakdown": {
              "host": {"application_memory": 6996594688, "constants": 0, "dma_buffers": 1048576, "tensors": 0},
              "neuroncore_memory_usage": {
                "0": {"constants": 193986816, "model_code": 176285056, "model_shared_scratchpad": 0, "runtime_memory": 0, "tensors": 20971520},
                "1": {"constants": 193986816, "model_code": 176285056, "model_shared_scratchpad": 0, "runtime_memory": 0, "tensors": 20971520}
              }
            }
          },
          "loaded_models": [
            {
              "name": "neff",
              "uuid": "91f2f66e83ea419dace1da07617ad39f",
              "model_id": 10005,
              "is_running": false,
              "subgraphs": {
                "sg_00": {
                  "memory_used_bytes": {
                    "host": 20480,
                    "neuron_device": 21001024,
                    "usage_breakdown": {
                      "host": {"application_memory": 20480, "constants": 0, "dma_buffers": 0, "tensors": 0},
                      "neuron_device": {"constants": 20971520, "model_code": 29504, "runtime_memory": 0, "tensors": 0}
                    }
                  },
                  "neuroncore_index": 0,
                  "neuron_device_index": 12
                }
              }
            }
          ],
          "error": ""
        },
        "neuron_runtime_vcpu_usage": {
          "period": 1.030604818,
          "vcpu_usage": {"user": 42.01, "system": 12.34},
          "error": ""
        }
      }
    }
  ],
  "system_data": {
    "neuron_hw_counters": {
      "period": 1.030359284,
      "neuron_devices": [
        {"neuron_device_index": 0, "mem_ecc_corrected": 0, "mem_ecc_uncorrected": 0, "sram_ecc_uncorrected": 0, "sram_ecc_corrected": 0}
      ],
      "error": ""
    },
    "vcpu_usage": {
      "period": 0.999974868,
      "average_usage": {"user": 32.77, "nice": 0, "system": 22.87, "idle": 39.36, "io_wait": 0, "irq": 0, "soft_irq": 0},
      "usage_data": {
        "0": {"user": 34.41, "nice": 0, "system": 27.96, "idle": 37.63, "io_wait": 0, "irq": 0, "soft_irq": 0},
        "1": {"user": 56.84, "nice": 0, "system": 28.42, "idle": 14.74, "io_wait": 0, "irq": 0, "soft_irq": 0}
      },
      "context_switch_count": 123456,
      "error": ""
    },
    "memory_info": {"period": 5.346411129, "memory_total_bytes": 49345835008, "memory_used_bytes": 16042344448, "swap_total_bytes": 0, "swap_used_bytes": 0, "error": ""}
  },
  "instance_info": {"instance_name": "My_Instance", "instance_id": "i-0011223344556677a", "instance_type": "trn2n.48xlarge", "instance_availability_zone": "us-west-2b", "instance_availability_zone_id": "usw2-az2", "instance_region": "us-west-2", "ami_id": "ami-0011223344556677b", "subnet_id": "subnet-112233ee", "error": ""},
  "neuron_hardware_info": {"neuron_device_type": "trainium2", "neuron_device_version": "v4", "neuroncore_version": "v3d", "neuron_device_count": 16, "neuron_device_memory_size": 103079215104, "neuroncore_per_device_count": 4, "logical_neuroncore_config": 2, "error": ""},
  "neuron_k8s_info": {
    "period": 15.030359284,
    "neuroncores_k8s_info": {
      "0": {"pod_name": "p0", "namespace": "n0", "container_name": ["c0"]},
      "1": {"pod_name": "p0", "namespace": "n0", "container_name": ["c0"]}
    },
    "neurondevices_k8s_info": {
      "0": {"pod_name": "p0", "namespace": "n0", "container_name": ["c0"]}
    },
    "error": ""
  }
}"#;

/// Where a key of a map (cores, vCPUs, subgraphs, devices) stands in a path: `*`.
fn is_map_key(key: &str) -> bool {
    key.bytes().all(|b| b.is_ascii_digit()) || key.starts_with("nc_v3.") || key.starts_with("sg_")
}

/// The JSON pointer and the printed path (`$.a[].b.*`) of every object in `value`.
fn objects(value: &Value, pointer: String, path: String, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(fields) => {
            found.push((pointer.clone(), path.clone()));
            for (key, field) in fields {
                let shown = if is_map_key(key) { "*" } else { key.as_str() };
                let escaped = key.replace('~', "~0").replace('/', "~1");
                objects(field, format!("{pointer}/{escaped}"), format!("{path}.{shown}"), found);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                objects(item, format!("{pointer}/{i}"), format!("{path}[]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn the_monitor_schema_takes_the_documented_report_requires_its_fields_and_refuses_others() {
    let schema = monitor_schema();
    let documented: Value = serde_json::from_str(DOCUMENTED_REPORT).expect("the documented report is JSON");
    let broken = violations(&schema, &schema, &documented, "$");
    assert!(broken.is_empty(), "the guide's own report breaks the schema: {broken:#?}");

    // Per object of the documented report: each key, `?` when the schema lets it be left out
    // (it must be a metric group, neuron_k8s_info, v3d or a map's entry); then `+corral_*`
    // when the schema takes an added `corral_` field there. Any other added field is refused.
    let mut found = Vec::new();
    objects(&documented, String::new(), "$".to_owned(), &mut found);
    let mut lines: Vec<String> = Vec::new();
    for (pointer, path) in found {
        let fields = documented.pointer(&pointer).and_then(Value::as_object).expect("an object");
        let with = |change: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut changed = documented.clone();
            change(changed.pointer_mut(&pointer).and_then(Value::as_object_mut).expect("an object"));
            violations(&schema, &schema, &changed, "$").is_empty()
        };
        let mut keys: Vec<String> = Vec::new();
        for key in fields.keys() {
            let shown = if is_map_key(key) { "*".to_owned() } else { key.clone() };
            let optional = with(&|o| {
                o.remove(key);
            });
            let shown = if optional { format!("{shown}?") } else { shown };
            if !keys.contains(&shown) {
                keys.push(shown);
            }
        }
        assert!(!with(&|o| drop(o.insert("undocumented".into(), 0.into()))), "{path} takes an undocumented field");
        if with(&|o| drop(o.insert("corral_extra".into(), 0.into()))) {
            keys.push("+corral_*".to_owned());
        }
        let line = format!("{path}: {}", keys.join(" "));
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    expect_test::expect![[r#"
        $: instance_info neuron_hardware_info neuron_k8s_info? neuron_runtime_data system_data +corral_*
        $.instance_info: ami_id error instance_availability_zone instance_availability_zone_id instance_id instance_name instance_region instance_type subnet_id +corral_*
        $.neuron_hardware_info: error logical_neuroncore_config neuron_device_count neuron_device_memory_size neuron_device_type neuron_device_version neuroncore_per_device_count neuroncore_version +corral_*
        $.neuron_k8s_info: error neuroncores_k8s_info neurondevices_k8s_info period +corral_*
        $.neuron_k8s_info.neuroncores_k8s_info: *?
        $.neuron_k8s_info.neuroncores_k8s_info.*: container_name namespace pod_name +corral_*
        $.neuron_k8s_info.neurondevices_k8s_info: *?
        $.neuron_k8s_info.neurondevices_k8s_info.*: container_name namespace pod_name +corral_*
        $.neuron_runtime_data[]: address error neuron_runtime_tag pid report +corral_*
        $.neuron_runtime_data[].report: execution_stats? memory_used? neuron_runtime_vcpu_usage? neuroncore_counters? +corral_*
        $.neuron_runtime_data[].report.execution_stats: error error_summary execution_summary latency_stats period +corral_*
        $.neuron_runtime_data[].report.execution_stats.error_summary: generic hardware model numerical runtime transient
        $.neuron_runtime_data[].report.execution_stats.execution_summary: completed completed_with_err completed_with_num_err failed_to_queue incorrect_input timed_out
        $.neuron_runtime_data[].report.execution_stats.latency_stats: device_latency total_latency
        $.neuron_runtime_data[].report.execution_stats.latency_stats.device_latency: p0 p1 p100 p25 p50 p75 p99
        $.neuron_runtime_data[].report.execution_stats.latency_stats.total_latency: p0 p1 p100 p25 p50 p75 p99
        $.neuron_runtime_data[].report.memory_used: error loaded_models neuron_runtime_used_bytes period +corral_*
        $.neuron_runtime_data[].report.memory_used.loaded_models[]: is_running model_id name subgraphs uuid +corral_*
        $.neuron_runtime_data[].report.memory_used.loaded_models[].subgraphs: *?
        $.neuron_runtime_data[].report.memory_used.loaded_models[].subgraphs.*: memory_used_bytes neuron_device_index neuroncore_index +corral_*
        $.neuron_runtime_data[].report.memory_used.loaded_models[].subgraphs.*.memory_used_bytes: host neuron_device usage_breakdown +corral_*
        $.neuron_runtime_data[].report.memory_used.loaded_models[].subgraphs.*.memory_used_bytes.usage_breakdown: host neuron_device
        $.neuron_runtime_data[].report.memory_used.loaded_models[].subgraphs.*.memory_used_bytes.usage_breakdown.host: application_memory constants dma_buffers tensors
        $.neuron_runtime_data[].report.memory_used.loaded_models[].subgraphs.*.memory_used_bytes.usage_breakdown.neuron_device: constants model_code runtime_memory tensors
        $.neuron_runtime_data[].report.memory_used.neuron_runtime_used_bytes: host neuron_device usage_breakdown +corral_*
        $.neuron_runtime_data[].report.memory_used.neuron_runtime_used_bytes.usage_breakdown: host neuroncore_memory_usage
        $.neuron_runtime_data[].report.memory_used.neuron_runtime_used_bytes.usage_breakdown.host: application_memory constants dma_buffers tensors
        $.neuron_runtime_data[].report.memory_used.neuron_runtime_used_bytes.usage_breakdown.neuroncore_memory_usage: *?
        $.neuron_runtime_data[].report.memory_used.neuron_runtime_used_bytes.usage_breakdown.neuroncore_memory_usage.*: constants model_code model_shared_scratchpad runtime_memory tensors
        $.neuron_runtime_data[].report.neuron_runtime_vcpu_usage: error period vcpu_usage +corral_*
        $.neuron_runtime_data[].report.neuron_runtime_vcpu_usage.vcpu_usage: system user +corral_*
        $.neuron_runtime_data[].report.neuroncore_counters: error neuroncores_in_use period +corral_*
        $.neuron_runtime_data[].report.neuroncore_counters.neuroncores_in_use: *?
        $.neuron_runtime_data[].report.neuroncore_counters.neuroncores_in_use.*: flops neuroncore_utilization v3d? +corral_*
        $.neuron_runtime_data[].report.neuroncore_counters.neuroncores_in_use.*.v3d: *?
        $.neuron_runtime_data[].report.neuroncore_counters.neuroncores_in_use.*.v3d.*: neuroncore_utilization
        $.system_data: memory_info? neuron_hw_counters? vcpu_usage? +corral_*
        $.system_data.memory_info: error memory_total_bytes memory_used_bytes period swap_total_bytes swap_used_bytes +corral_*
        $.system_data.neuron_hw_counters: error neuron_devices period +corral_*
        $.system_data.neuron_hw_counters.neuron_devices[]: mem_ecc_corrected mem_ecc_uncorrected neuron_device_index sram_ecc_corrected sram_ecc_uncorrected +corral_*
        $.system_data.vcpu_usage: average_usage context_switch_count error period usage_data +corral_*
        $.system_data.vcpu_usage.average_usage: idle io_wait irq nice soft_irq system user +corral_*
        $.system_data.vcpu_usage.usage_data: *?
        $.system_data.vcpu_usage.usage_data.*: idle io_wait irq nice soft_irq system user +corral_*"#]].assert_eq(&lines.join("\n"));
}
