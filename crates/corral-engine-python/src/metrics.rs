//! Custom metrics (`pb_utils.MetricFamily` / `Metric`): each change a stub reports (`metric`
//! frames: a series created, a counter incremented, a gauge set, a histogram's observation)
//! kept here for the process, and rendered in Prometheus' text format for the server's
//! metrics port. A family is its name (as Triton's: the same name and kind is the same family
//! whichever model or instance makes it); a series is its label set, shown sorted by name.
//! Counters and histograms add up what every instance reports.

use std::{collections::BTreeMap, fmt::Write as _, sync::Mutex};

use corral_cores::sync::lock;
use serde_json::Value;

struct Family {
    description: String,
    /// Triton's kinds: 0 counter, 1 gauge, 2 histogram.
    kind: u64,
    series: BTreeMap<Vec<(String, String)>, Series>,
}

#[derive(Default)]
struct Series {
    value: f64,
    buckets: Vec<f64>,
    /// Per bucket (and one past the last), not cumulative.
    counts: Vec<u64>,
    sum: f64,
}

static FAMILIES: Mutex<BTreeMap<String, Family>> = Mutex::new(BTreeMap::new());

/// Records one `metric` frame of a stub.
pub fn record(change: &Value) {
    let Some(name) = change["family"].as_str().filter(|n| valid(n)) else { return };
    let labels: Vec<(String, String)> = change["labels"]
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| Some((p[0].as_str()?.to_owned(), p[1].as_str()?.to_owned())))
                .filter(|(k, _)| valid(k))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    // One series per label set, whatever order the model named them in (Triton sorts them).
    let mut labels = labels;
    labels.sort();
    let value = change["value"].as_f64().unwrap_or(0.0);
    let mut families = lock(&FAMILIES);
    let family = families.entry(name.to_owned()).or_insert_with(|| Family {
        description: change["description"].as_str().unwrap_or_default().to_owned(),
        kind: change["kind"].as_u64().unwrap_or(0),
        series: BTreeMap::new(),
    });
    let series = family.series.entry(labels).or_default();
    if series.buckets.is_empty() {
        series.buckets =
            change["buckets"].as_array().map(|b| b.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
        series.counts = vec![0; series.buckets.len() + 1];
    }
    match change["change"].as_str() {
        Some("increment") => series.value += value,
        Some("set") => series.value = value,
        Some("observe") => {
            let slot = series.buckets.iter().position(|b| value <= *b).unwrap_or(series.buckets.len());
            series.counts[slot] += 1;
            series.sum += value;
        }
        _ => {}
    }
}

/// A metric or label name Prometheus takes.
fn valid(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Every family, in Prometheus' text format.
pub fn render() -> String {
    let mut out = String::new();
    let escape = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    for (name, family) in lock(&FAMILIES).iter() {
        let kind = ["counter", "gauge", "histogram"].get(family.kind as usize).copied().unwrap_or("untyped");
        let _ = writeln!(out, "# HELP {name} {}", family.description.replace('\n', " "));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, series) in &family.series {
            let listed = |extra: Option<(&str, String)>| {
                let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                pairs.extend(extra.map(|(k, v)| format!("{k}=\"{v}\"")));
                if pairs.is_empty() { String::new() } else { format!("{{{}}}", pairs.join(",")) }
            };
            if family.kind != 2 {
                let _ = writeln!(out, "{name}{} {}", listed(None), series.value);
                continue;
            }
            let mut cumulative = 0;
            for (i, count) in series.counts.iter().enumerate() {
                cumulative += count;
                let le = series.buckets.get(i).map_or_else(|| "+Inf".to_owned(), f64::to_string);
                let _ = writeln!(out, "{name}_bucket{} {cumulative}", listed(Some(("le", le))));
            }
            let _ = writeln!(out, "{name}_sum{} {}", listed(None), series.sum);
            let _ = writeln!(out, "{name}_count{} {cumulative}", listed(None));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_from_instances_add_up_in_prometheus_text() {
        let change = |family: &str, kind: u64, change: &str, value: f64| {
            serde_json::json!({"family": family, "description": "what it counts", "kind": kind,
                "labels": [["model", "m"], ["version", "1"]], "buckets": [1.0, 5.0], "change": change, "value": value})
        };
        record(&change("test_requests", 0, "create", 0.0));
        record(&change("test_requests", 0, "increment", 2.0));
        record(&change("test_requests", 0, "increment", 3.0));
        record(&change("test_level", 1, "set", 7.5));
        record(&change("test_sizes", 2, "observe", 0.5));
        record(&change("test_sizes", 2, "observe", 3.0));
        record(&change("bad name", 0, "increment", 1.0));
        let text = render();
        for line in [
            "# HELP test_requests what it counts",
            "# TYPE test_requests counter",
            "test_requests{model=\"m\",version=\"1\"} 5",
            "# TYPE test_level gauge",
            "test_level{model=\"m\",version=\"1\"} 7.5",
            "test_sizes_bucket{model=\"m\",version=\"1\",le=\"1\"} 1",
            "test_sizes_bucket{model=\"m\",version=\"1\",le=\"5\"} 2",
            "test_sizes_bucket{model=\"m\",version=\"1\",le=\"+Inf\"} 2",
            "test_sizes_sum{model=\"m\",version=\"1\"} 3.5",
            "test_sizes_count{model=\"m\",version=\"1\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(!text.contains("bad name"), "{text}");
    }
}
