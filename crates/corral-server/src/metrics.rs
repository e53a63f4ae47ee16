//! Prometheus text for the metrics port. Per model, Triton's names (`nv_inference_*`, with
//! `model` and `version` labels; durations in microseconds); then what Triton lacks
//! (`corral_*`): a request-duration histogram per model (seconds), queue depth per instance,
//! executions per instance, and per core utilisation (since the last scrape), executions,
//! busy time and model switches.

use std::{fmt::Write, sync::atomic::Ordering::Relaxed};

use crate::{counters::DURATION_BUCKETS, state::ServerState};

/// Renders every metric. Counters of unloaded models stay (their totals only grow).
pub fn render(state: &ServerState) -> String {
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
            c.compute_infer.ns.load(Relaxed) / 1000
        }),
        ("nv_inference_compute_input_duration_us", "counter", "Cumulative input preparation time", |c| {
            c.compute_input.ns.load(Relaxed) / 1000
        }),
        ("nv_inference_compute_output_duration_us", "counter", "Cumulative output preparation time", |c| {
            c.compute_output.ns.load(Relaxed) / 1000
        }),
    ];
    for (name, kind, help, read) in per_model {
        family(&mut out, name, kind, help);
        for (model, c) in &counters {
            let _ = writeln!(out, "{name}{{model=\"{model}\",version=\"1\"}} {}", read(c));
        }
    }
    let name = "corral_request_duration_seconds";
    family(&mut out, name, "histogram", "Request duration from acceptance to answer, every answered request");
    for (model, c) in &counters {
        let (cumulative, sum) = c.duration.cumulative();
        let bounds = DURATION_BUCKETS.iter().map(|le| le.to_string()).chain(["+Inf".to_owned()]);
        for (le, count) in bounds.zip(&cumulative) {
            let _ = writeln!(out, "{name}_bucket{{model=\"{model}\",le=\"{le}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {sum:.6}");
        let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {}", cumulative.last().copied().unwrap_or(0));
    }
    family(&mut out, "corral_queue_depth", "gauge", "Calls queued or executing on each model instance");
    for served in state.served() {
        for (i, depth) in served.model.queue_depths().iter().enumerate() {
            let _ = writeln!(out, "corral_queue_depth{{model=\"{}\",instance=\"{i}\"}} {depth}", served.name);
        }
    }
    family(&mut out, "corral_instance_executions_total", "counter", "Executions per model instance");
    for served in state.served() {
        let stats = served.model.stats();
        for (i, (span, executions)) in served.model.instances().iter().zip(&stats.instance_executions).enumerate() {
            let _ = writeln!(
                out,
                "corral_instance_executions_total{{model=\"{}\",instance=\"{i}\",cores=\"{span}\"}} {executions}",
                served.name
            );
        }
    }
    let cores = state.runtime.core_stats();
    family(&mut out, "corral_core_utilization", "gauge", "Share of time each core executed, since the last scrape");
    for (core, utilization) in cores.iter().zip(state.core_utilization(&cores)) {
        let _ = writeln!(
            out,
            "corral_core_utilization{{core=\"nc{}\",global=\"{}\"}} {utilization:.4}",
            core.index, core.global
        );
    }
    let per_core: [(&str, &str, &str); 3] = [
        ("corral_core_executions_total", "counter", "Executions run on each core"),
        ("corral_core_busy_seconds_total", "counter", "Time each core spent executing"),
        ("corral_core_switches_total", "counter", "Times a core changed model"),
    ];
    for (name, kind, help) in per_core {
        family(&mut out, name, kind, help);
        for core in &cores {
            let value = match name {
                "corral_core_executions_total" => core.executions.to_string(),
                "corral_core_busy_seconds_total" => format!("{:.6}", core.busy.as_secs_f64()),
                _ => core.switches.to_string(),
            };
            let models = core.models.join(",");
            let _ = writeln!(
                out,
                "{name}{{core=\"nc{}\",global=\"{}\",models=\"{models}\"}} {value}",
                core.index, core.global
            );
        }
    }
    out
}
