//! A JSON Schema checker for the keywords `schemas/*.json` use (type, properties, required,
//! additionalProperties, propertyNames.pattern, items, minimum, maximum, local `$ref`). A
//! keyword it does not know fails the test, so the schema cannot say more than is checked.

use serde_json::Value;

/// Every place `value` breaks `schema` (rooted at `root` for `$ref`), as `path: why`.
pub(super) fn violations(root: &Value, schema: &Value, value: &Value, path: &str) -> Vec<String> {
    let mut found = Vec::new();
    check(root, schema, value, path, &mut found);
    found
}

fn check(root: &Value, schema: &Value, value: &Value, path: &str, found: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        found.push(format!("{path}: the schema here is not an object"));
        return;
    };
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
            "additionalProperties" => {
                let known = schema.get("properties").and_then(Value::as_object);
                for (name, field) in value.as_object().into_iter().flatten() {
                    if known.is_some_and(|k| k.contains_key(name)) {
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
        "properties": { "a": { "$ref": "#/$defs/n" }, "m": { "type": "object", "propertyNames": { "pattern": "^[0-9]+$" } } },
        "$defs": { "n": { "type": "integer", "minimum": 0 } }
    });
    assert!(violations(&schema, &schema, &serde_json::json!({"a": 1, "m": {"0": 1}}), "$").is_empty());
    let bad = violations(&schema, &schema, &serde_json::json!({"a": -1, "b": 0, "m": {"x": 1}}), "$");
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert_eq!(violations(&schema, &schema, &serde_json::json!({}), "$"), vec!["$: `a` is missing"]);
}
