//! The optimiser against exhaustive search on many small random cases (never worse on the
//! objective, never a shared core when a layout without one exists, K consecutive cores per
//! instance inside the process), and the simulator's books (every call answered once, no core
//! running two things at once).

mod simulator;

use corral_plan::optimize::{Demand, min_ratio, optimize, switches};
use proptest::prelude::*;

fn demands() -> impl Strategy<Value = (Vec<Demand>, usize)> {
    (1usize..=8, prop::collection::vec((1usize..=3, 1u32..=40, 0u32..=300), 1..=4)).prop_map(|(cores, models)| {
        let models = models
            .into_iter()
            .enumerate()
            .map(|(i, (k, service_ms, rate))| Demand {
                name: format!("m{i}"),
                cores_per_instance: k.min(cores),
                service: f64::from(service_ms) / 1e3,
                rate: f64::from(rate),
            })
            .collect();
        (models, cores)
    })
}

/// Every count vector with one instance each or more that fits without sharing.
fn all_counts(models: &[Demand], cores: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    fn go(models: &[Demand], cores: usize, used: usize, prefix: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        let Some(m) = models.get(prefix.len()) else {
            out.push(prefix.clone());
            return;
        };
        let mut n = 1;
        while used + n * m.cores_per_instance <= cores {
            prefix.push(n);
            go(models, cores, used + n * m.cores_per_instance, prefix, out);
            prefix.pop();
            n += 1;
        }
    }
    go(models, cores, 0, &mut Vec::new(), &mut out);
    out
}

/// Every start of one instance each.
fn all_starts(models: &[Demand], cores: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    for m in models {
        out = out
            .into_iter()
            .flat_map(|prefix: Vec<usize>| {
                (0..=cores - m.cores_per_instance).map(move |s| [prefix.clone(), vec![s]].concat())
            })
            .collect();
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_optimiser_is_never_worse_than_exhaustive_search((models, cores) in demands()) {
        let plan = optimize(&models, cores, false).expect("every model fits the process");
        for (planned, m) in plan.models.iter().zip(&models) {
            prop_assert!(!planned.starts.is_empty(), "every model has an instance");
            for span in planned.spans() {
                prop_assert_eq!(span.count, m.cores_per_instance);
                prop_assert!(span.first + span.count <= cores, "inside the process");
            }
        }
        let spans: Vec<_> = plan.models.iter().flat_map(|p| p.spans()).collect();
        let overlapping = spans.iter().enumerate().any(|(i, a)| spans[i + 1..].iter().any(|b| a.overlaps(b)));
        prop_assert_eq!(overlapping, plan.shared);
        let unshared = all_counts(&models, cores);
        if let Some(best) = unshared.iter().map(|c| min_ratio(&models, c)).max_by(f64::total_cmp) {
            prop_assert!(!plan.shared, "a layout without a shared core exists");
            prop_assert!(plan.min_ratio >= best - 1e-9, "optimiser {} < exhaustive {}", plan.min_ratio, best);
        } else {
            let best = all_starts(&models, cores).iter().map(|s| switches(&models, s, cores)).fold(f64::INFINITY, f64::min);
            prop_assert!(plan.switches_per_s <= best + 1e-9, "optimiser {} > exhaustive {}", plan.switches_per_s, best);
        }
    }
}
