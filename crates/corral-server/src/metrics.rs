//! Prometheus text for the metrics port. Per model version, Triton's names (`nv_inference_*`,
//! with `model` and `version` labels; durations in microseconds); then what Triton lacks
//! (`corral_*`): a request-duration histogram per model version (seconds), queue depth and
//! executions per instance, the autopilot's moves per model version and direction (every
//! series present from the load, at 0), whether each model version is ready
//! (`corral_model_ready`, what deploy/prometheus's alert reads), per core executions, busy
//! time and model switches, and the live pages open (`corral_dashboard_pages`).
//!
//! Every series keeps its labels for the server's life, so `rate()` never sees a reset that
//! did not happen: no label changes when a model loads, reloads or its instances move. What
//! does change (which models run on a core, which cores an instance spans) is an info gauge
//! of its own (`corral_core_models`, `corral_instance_cores`, `corral_model_engine`, value 1). Utilisation is
//! `rate(corral_core_busy_seconds_total[1m])`: a scrape changes nothing, so any number of
//! scrapers read the same counters.

use std::{fmt::Write, sync::atomic::Ordering::Relaxed};

use crate::{counters::DURATION_BUCKETS, state::ServerState};

/// Renders every metric, with the live pages open now. Counters of unloaded models stay (their
/// totals only grow).
pub fn render(state: &ServerState, pages: usize) -> String {
    let mut out = String::new();
    let counters = state.all_counters();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    type Read = fn(&crate::counters::Counters) -> u64;
    let per_model: [(&str, &str, &str, Read); 10] = [
        ("nv_inference_request_success", "counter", "Successful inference requests", |c| c.success.count.load(Relaxed)),
        ("nv_inference_request_failure", "counter", "Failed inference requests", |c| c.fail.count.load(Relaxed)),
        ("nv_inference_count", "counter", "Inferences performed (batch rows count one each)", |c| {
            c.inferences.load(Relaxed)
        }),
        ("nv_inference_exec_count", "counter", "Model executions performed", |c| c.executions.load(Relaxed)),
        ("nv_inference_pending_request_count", "gauge", "Requests accepted and not yet answered", |c| {
            c.pending.load(Relaxed)
        }),
        ("nv_inference_request_duration_us", "counter", "Cumulative request duration, successful requests", |c| {
            c.success.ns.load(Relaxed) / 1000
        }),
        ("nv_inference_queue_duration_us", "counter", "Cumulative time requests waited for their cores", |c| {
            c.queue.ns.load(Relaxed) / 1000
        }),
        ("nv_inference_compute_infer_duration_us", "counter", "Cumulative engine time", |c| {
            c.compute.infer_ns.load(Relaxed) / 1000
        }),
        ("nv_inference_compute_input_duration_us", "counter", "Cumulative input preparation time", |c| {
            c.compute.input_ns.load(Relaxed) / 1000
        }),
        ("nv_inference_compute_output_duration_us", "counter", "Cumulative output preparation time", |c| {
            c.compute.output_ns.load(Relaxed) / 1000
        }),
    ];
    for (name, kind, help, read) in per_model {
        family(&mut out, name, kind, help);
        for (model, version, c) in &counters {
            let _ = writeln!(out, "{name}{{model=\"{model}\",version=\"{version}\"}} {}", read(c));
        }
    }
    let name = "corral_request_duration_seconds";
    family(&mut out, name, "histogram", "Request duration from acceptance to answer, every answered request");
    for (model, version, c) in &counters {
        let (cumulative, sum) = c.duration.cumulative();
        let bounds = DURATION_BUCKETS.iter().map(|le| le.to_string()).chain(["+Inf".to_owned()]);
        let labels = format!("model=\"{model}\",version=\"{version}\"");
        for (le, count) in bounds.zip(&cumulative) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum:.6}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", cumulative.last().copied().unwrap_or(0));
    }
    let served = state.served();
    let name = "corral_model_ready";
    family(
        &mut out,
        name,
        "gauge",
        "1 while a model version serves; 0 once unloaded, or for a model that failed to load",
    );
    let mut ready: std::collections::BTreeMap<(String, String), bool> =
        counters.iter().map(|(model, version, _)| ((model.clone(), version.to_string()), false)).collect();
    for s in &served {
        ready.insert((s.name.clone(), s.version.to_string()), true);
    }
    // A model that failed to load has no version serving: one series without a version.
    for model in state.failed_loads() {
        if !ready.keys().any(|(name, _)| *name == model) {
            ready.insert((model, String::new()), false);
        }
    }
    for ((model, version), ready) in ready {
        let _ = writeln!(out, "{name}{{model=\"{model}\",version=\"{version}\"}} {}", u8::from(ready));
    }
    family(&mut out, "corral_model_engine", "gauge", "The engine each model version runs on (info: always 1)");
    for (s, model) in served.iter().filter_map(|s| s.model().map(|m| (s, m))) {
        let engine = model.engine().engine;
        let _ = writeln!(
            out,
            "corral_model_engine{{model=\"{}\",version=\"{}\",engine=\"{engine}\"}} 1",
            s.name, s.version
        );
    }
    // Instances are labelled by id, which stays with an instance while the autopilot moves
    // others (a position would hand one instance's counter to another).
    let instances: Vec<_> = served.iter().map(|s| s.model().map(|m| m.stats().instances).unwrap_or_default()).collect();
    // One family per instance measure: its name, kind, help, an extra label and the value.
    type ReadInstance = fn(&corral_runtime::InstanceStats) -> (String, String);
    let per_instance: [(&str, &str, &str, ReadInstance); 3] = [
        ("corral_queue_depth", "gauge", "Calls queued or executing on each model instance", |i| {
            (String::new(), i.in_flight.to_string())
        }),
        ("corral_instance_executions_total", "counter", "Executions per model instance", |i| {
            (String::new(), i.executions.to_string())
        }),
        ("corral_instance_cores", "gauge", "The process cores each model instance spans (info: always 1)", |i| {
            (format!(",cores=\"{}\"", i.cores), "1".to_owned())
        }),
    ];
    for (name, kind, help, read) in per_instance {
        family(&mut out, name, kind, help);
        for (s, list) in served.iter().zip(&instances) {
            for i in list {
                let (extra, value) = read(i);
                let _ = writeln!(
                    out,
                    "{name}{{model=\"{}\",version=\"{}\",instance=\"{}\"{extra}}} {value}",
                    s.name, s.version, i.id
                );
            }
        }
    }
    let name = "corral_autopilot_moves_total";
    family(&mut out, name, "counter", "Instances the autopilot started (grow), retired (shrink) and relocated (move)");
    for (s, model) in served.iter().filter_map(|s| s.model().map(|m| (s, m))) {
        let (grow, shrink, relocate) = model.moves();
        for (direction, count) in [("grow", grow), ("shrink", shrink), ("move", relocate)] {
            let _ = writeln!(
                out,
                "{name}{{model=\"{}\",version=\"{}\",direction=\"{direction}\"}} {count}",
                s.name, s.version
            );
        }
    }
    let cores = state.runtime.core_stats();
    let per_core: [(&str, &str); 3] = [
        ("corral_core_executions_total", "Executions run on each core"),
        ("corral_core_busy_seconds_total", "Time each core spent executing; its rate is the core's utilisation"),
        ("corral_core_switches_total", "Times a core changed model"),
    ];
    for (name, help) in per_core {
        family(&mut out, name, "counter", help);
        for core in &cores {
            let value = match name {
                "corral_core_executions_total" => core.executions.to_string(),
                "corral_core_busy_seconds_total" => format!("{:.6}", core.busy.as_secs_f64()),
                _ => core.switches.to_string(),
            };
            let _ = writeln!(out, "{name}{{core=\"nc{}\",global=\"{}\"}} {value}", core.index, core.global);
        }
    }
    family(&mut out, "corral_core_models", "gauge", "The model versions placed on each core (info: always 1)");
    for core in &cores {
        for runtime_name in &core.models {
            // Served versions are `NAME@V` in the runtime; anything else has no version.
            let (model, version) = match runtime_name.rsplit_once('@') {
                Some((model, version)) if version.parse::<u64>().is_ok() => (model, version),
                _ => (runtime_name.as_str(), ""),
            };
            let _ = writeln!(
                out,
                "corral_core_models{{core=\"nc{}\",global=\"{}\",model=\"{model}\",version=\"{version}\"}} 1",
                core.index, core.global
            );
        }
    }
    family(&mut out, "corral_dashboard_pages", "gauge", "Live pages (/dashboard event streams) open now");
    let _ = writeln!(out, "corral_dashboard_pages {}", pages);
    // The models' own (a Python model's pb_utils.MetricFamily), as they named them.
    out.push_str(&state.runtime.engine_metrics());
    out
}
