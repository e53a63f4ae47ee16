//! The simulator's books balance whatever the layout and load, with the autopilot moving
//! instances or not: every call is answered once, after it arrived and after it started; no
//! core runs two executions at once; a layout and seed always give the same run.

use corral_dispatch::CoreSpan;
use corral_plan::{
    arrivals::schedule,
    simulate::{ModelSpec, Service, Spec, simulate},
};
use proptest::prelude::*;

fn spec() -> impl Strategy<Value = (Spec, Vec<f64>, f64)> {
    let model = (1usize..=2, prop::collection::vec(0usize..4, 1..=3), 1u32..=30, 0u32..=10, any::<bool>(), 0u32..=200);
    (prop::collection::vec(model, 1..=3), 0u32..=3, 1usize..=4, any::<bool>()).prop_map(
        |(models, cv, run_max, autopilot)| {
            let cores = 4;
            let mut rates = Vec::new();
            let models = models
                .into_iter()
                .enumerate()
                .map(|(i, (k, starts, latency_ms, switch_ms, elastic, rate))| {
                    rates.push(f64::from(rate));
                    let mut starts: Vec<usize> = starts.into_iter().map(|s| s.min(cores - k)).collect();
                    starts.sort_unstable();
                    starts.dedup_by(|b, a| *b < *a + k);
                    ModelSpec {
                        name: format!("m{i}"),
                        cores_per_instance: k,
                        instances: starts.iter().map(|&s| CoreSpan::new(s, k)).collect(),
                        elastic,
                        service: Service::Fixed {
                            latency: f64::from(latency_ms) / 1e3,
                            switch: f64::from(switch_ms) / 1e3,
                        },
                        bounds: None,
                        grouped: false,
                    }
                })
                .collect();
            let spec = Spec {
                cores,
                exec_timeout: 0.5,
                queue_len_max: 16,
                run_max,
                models,
                autopilot: autopilot.then_some(0.1),
            };
            (spec, rates, f64::from(cv))
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_call_is_answered_once_and_no_core_runs_two_things((spec, rates, cv) in spec(), seed in 0u64..1000) {
        let arrivals = schedule(&rates, cv, seed, 2.0);
        let run = simulate(&spec, &arrivals, seed);
        prop_assert_eq!(&run, &simulate(&spec, &arrivals, seed), "deterministic");
        let mut intervals: Vec<Vec<(f64, f64)>> = vec![Vec::new(); spec.cores];
        for (m, calls) in run.calls.iter().enumerate() {
            prop_assert_eq!(calls.len(), arrivals[m].len(), "one record per arrival");
            for call in calls {
                prop_assert!(call.end >= call.arrival);
                match (call.failure, call.start) {
                    (None, Some(start)) => {
                        prop_assert!(start >= call.arrival && start <= call.end);
                        prop_assert!(start - call.arrival < spec.exec_timeout + 1e-9, "started in time");
                        let span = call.cores.expect("a call that ran has its cores");
                        prop_assert!(span.first + span.count <= spec.cores);
                        prop_assert_eq!(span.count % spec.models[m].cores_per_instance, 0, "whole gangs");
                        for core in span.cores() {
                            intervals[core].push((start, call.end));
                        }
                    }
                    (Some(_), None) => {}
                    other => prop_assert!(false, "a call either ran or failed: {:?}", other),
                }
            }
        }
        for (core, mut spans) in intervals.into_iter().enumerate() {
            spans.sort_by(|a, b| a.0.total_cmp(&b.0));
            for pair in spans.windows(2) {
                prop_assert!(pair[1].0 >= pair[0].1 - 1e-12, "nc{} runs two at once: {:?}", core, pair);
            }
            let executions = spans.len() as u64;
            prop_assert_eq!(executions, run.cores[core].executions);
        }
    }
}
