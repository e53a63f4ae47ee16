//! `corral plan --optimize`: a layout for a device's cores from each model's cores per
//! instance (K), mean execution time and demand (SPEC §12).
//!
//! A model's demand in instances is its rate times its mean execution time; its capacity is
//! its instance count. The layout gives every model an instance, each instance K consecutive
//! cores, and:
//!
//! 1. When one instance of every model fits without sharing a core, the instance counts
//!    maximise the smallest capacity-to-demand ratio. This is exact, not a search: for a
//!    target ratio `t` the fewest instances are `max(1, ceil(t × demand))` each, their cores
//!    only grow with `t`, and the best `t` is one of the values `n / demand` (n instances of
//!    one model), so the largest that fits is found by bisection over those. Of the counts
//!    that reach it, the fewest cores are used (ties go to less fragmentation: every free core
//!    stays in one run at the end). Instances are then laid out from core 0, each model's
//!    together, models in the order given (name order).
//! 2. When they do not fit, every model gets one instance and cores are shared, placed for the
//!    fewest expected switches: on a core whose models get calls at rates `r_i` (sum `R`),
//!    consecutive calls belong to different models at a rate of about `R - Σ r_i² / R`
//!    (switches per second), summed over cores. The search is exact (branch and bound over
//!    start cores, the heaviest models first) up to [`EXACT_STARTS_MAX`] combinations, and a
//!    greedy placement (heaviest first, each at its cheapest start, ties to the lowest) beyond.
//! 3. With `elastic`, a single-core model with two or more instances whose expected load per
//!    instance is below a quarter (`demand / instances < 0.25`: lone calls are common) is
//!    marked elastic, so a lone call gets all its instances' cores.
//!
//! The objective is fairness (every model's capacity in proportion to its demand), not the
//! count of calls within a latency target: past saturation a layout that starves one model
//! can keep more of the others' calls fast (`bench/runs/2026-12-02-plan.md`).

use corral_dispatch::CoreSpan;

/// A model to place.
#[derive(Clone, Debug, PartialEq)]
pub struct Demand {
    pub name: String,
    pub cores_per_instance: usize,
    /// Mean execution time, seconds.
    pub service: f64,
    /// Calls per second it is planned for.
    pub rate: f64,
}

impl Demand {
    /// Demand in instances: rate × mean execution time.
    pub fn instances(&self) -> f64 {
        self.rate * self.service
    }
}

/// A model's place in the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub name: String,
    pub cores_per_instance: usize,
    /// Each instance's first core.
    pub starts: Vec<usize>,
    pub elastic: bool,
}

impl Planned {
    pub fn spans(&self) -> Vec<CoreSpan> {
        self.starts.iter().map(|&s| CoreSpan::new(s, self.cores_per_instance)).collect()
    }
}

/// A layout and what it achieves.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub models: Vec<Planned>,
    /// Some core holds more than one model.
    pub shared: bool,
    /// The smallest capacity-to-demand ratio (infinite when no model has demand).
    pub min_ratio: f64,
    /// Expected switches per second (0 without sharing).
    pub switches_per_s: f64,
}

/// Why there is no layout.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum OptimizeError {
    #[error("`{model}` needs {k} cores per instance, the process has {cores}")]
    TooWide { model: String, k: usize, cores: usize },
    #[error("`{model}`: cores per instance must be 1 or more")]
    NoCores { model: String },
}

/// Combinations of start cores searched exactly when cores must be shared; beyond, greedy.
pub const EXACT_STARTS_MAX: u64 = 2_000_000;

/// The layout of `models` on `cores` process cores (see the module docs).
pub fn optimize(models: &[Demand], cores: usize, elastic: bool) -> Result<Plan, OptimizeError> {
    for m in models {
        if m.cores_per_instance == 0 {
            return Err(OptimizeError::NoCores { model: m.name.clone() });
        }
        if m.cores_per_instance > cores {
            return Err(OptimizeError::TooWide { model: m.name.clone(), k: m.cores_per_instance, cores });
        }
    }
    let one_each: usize = models.iter().map(|m| m.cores_per_instance).sum();
    if one_each > cores {
        return Ok(shared(models, cores));
    }
    let counts = counts(models, cores);
    let mut next = 0;
    let planned = models
        .iter()
        .zip(&counts)
        .map(|(m, &n)| {
            let starts: Vec<usize> = (0..n).map(|i| next + i * m.cores_per_instance).collect();
            next += n * m.cores_per_instance;
            let lightly_loaded = m.instances() / (n as f64) < 0.25;
            Planned {
                name: m.name.clone(),
                cores_per_instance: m.cores_per_instance,
                starts,
                elastic: elastic && m.cores_per_instance == 1 && n >= 2 && lightly_loaded,
            }
        })
        .collect();
    Ok(Plan { models: planned, shared: false, min_ratio: min_ratio(models, &counts), switches_per_s: 0.0 })
}

/// The smallest capacity-to-demand ratio of `counts` (models without demand do not count).
pub fn min_ratio(models: &[Demand], counts: &[usize]) -> f64 {
    models
        .iter()
        .zip(counts)
        .filter(|(m, _)| m.instances() > 0.0)
        .map(|(m, &n)| n as f64 / m.instances())
        .fold(f64::INFINITY, f64::min)
}

/// Rule 1: the fewest instances that reach the best smallest ratio.
fn counts(models: &[Demand], cores: usize) -> Vec<usize> {
    let needed = |t: f64| -> Vec<usize> {
        models
            .iter()
            .map(|m| {
                let d = m.instances();
                if d > 0.0 {
                    // A small tolerance keeps t = n / d from rounding up to n + 1.
                    ((t * d - 1e-9).ceil().max(1.0)) as usize
                } else {
                    1
                }
            })
            .collect()
    };
    let fits =
        |counts: &[usize]| models.iter().zip(counts).map(|(m, &n)| n * m.cores_per_instance).sum::<usize>() <= cores;
    let mut candidates: Vec<f64> = models
        .iter()
        .filter(|m| m.instances() > 0.0)
        .flat_map(|m| (1..=cores / m.cores_per_instance).map(move |n| n as f64 / m.instances()))
        .collect();
    candidates.sort_by(f64::total_cmp);
    candidates.dedup();
    // The largest candidate that fits (the smallest always does: one instance each).
    let (mut lo, mut hi) = (0usize, candidates.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fits(&needed(candidates[mid])) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    match lo.checked_sub(1) {
        Some(best) => needed(candidates[best]),
        None => vec![1; models.len()],
    }
}

/// Expected switches per second on a core whose models get calls at `rates`.
fn core_switches(rates: &[f64]) -> f64 {
    let total: f64 = rates.iter().sum();
    if total <= 0.0 || rates.len() < 2 {
        return 0.0;
    }
    total - rates.iter().map(|r| r * r).sum::<f64>() / total
}

/// Expected switches per second of one instance per model at `starts`.
pub fn switches(models: &[Demand], starts: &[usize], cores: usize) -> f64 {
    let mut per_core: Vec<Vec<f64>> = vec![Vec::new(); cores];
    for (m, &s) in models.iter().zip(starts) {
        for rates in &mut per_core[s..s + m.cores_per_instance] {
            rates.push(m.rate);
        }
    }
    per_core.iter().map(|rates| core_switches(rates)).sum()
}

/// Rule 2: one instance each, sharing cores for the fewest expected switches.
fn shared(models: &[Demand], cores: usize) -> Plan {
    let mut order: Vec<usize> = (0..models.len()).collect();
    // Heaviest first: they decide the most.
    order.sort_by(|&a, &b| models[b].rate.total_cmp(&models[a].rate).then(a.cmp(&b)));
    let positions: u64 = models.iter().map(|m| (cores - m.cores_per_instance + 1) as u64).product::<u64>().max(1);
    let starts =
        if positions <= EXACT_STARTS_MAX { exact(models, &order, cores) } else { greedy(models, &order, cores) };
    let counts = vec![1; models.len()];
    let planned = models
        .iter()
        .zip(&starts)
        .map(|(m, &s)| Planned {
            name: m.name.clone(),
            cores_per_instance: m.cores_per_instance,
            starts: vec![s],
            elastic: false,
        })
        .collect();
    Plan {
        models: planned,
        shared: true,
        min_ratio: min_ratio(models, &counts),
        switches_per_s: switches(models, &starts, cores),
    }
}

/// The cost of a layout for comparison: expected switches, then more cores used by several
/// models (prefer spreading), then the lowest starts.
fn cost_key(models: &[Demand], starts: &[usize], cores: usize) -> (f64, usize) {
    let mut usage = vec![0usize; cores];
    for (m, &s) in models.iter().zip(starts) {
        (s..s + m.cores_per_instance).for_each(|c| usage[c] += 1);
    }
    let crowded: usize = usage.iter().map(|&u| u.saturating_sub(1)).sum();
    (switches(models, starts, cores), crowded)
}

fn exact(models: &[Demand], order: &[usize], cores: usize) -> Vec<usize> {
    struct Search<'a> {
        models: &'a [Demand],
        order: &'a [usize],
        cores: usize,
        rates: Vec<Vec<f64>>,
        starts: Vec<usize>,
        best: Option<((f64, usize), Vec<usize>)>,
    }
    impl Search<'_> {
        fn partial(&self) -> f64 {
            self.rates.iter().map(|r| core_switches(r)).sum()
        }
        fn go(&mut self, depth: usize) {
            if depth == self.order.len() {
                let key = cost_key(self.models, &self.starts, self.cores);
                let better = match &self.best {
                    None => true,
                    Some((best, starts)) => {
                        key.0 < best.0 - 1e-12
                            || ((key.0 - best.0).abs() <= 1e-12 && (key.1, &self.starts) < (best.1, starts))
                    }
                };
                if better {
                    self.best = Some((key, self.starts.clone()));
                }
                return;
            }
            let m = self.order[depth];
            let k = self.models[m].cores_per_instance;
            for s in 0..=self.cores - k {
                (s..s + k).for_each(|c| self.rates[c].push(self.models[m].rate));
                // Switches only grow as models are added: prune what is already worse.
                let bound = self.partial();
                if self.best.as_ref().is_none_or(|(best, _)| bound <= best.0 + 1e-12) {
                    self.starts[m] = s;
                    self.go(depth + 1);
                }
                (s..s + k).for_each(|c| {
                    self.rates[c].pop();
                });
            }
        }
    }
    let mut search =
        Search { models, order, cores, rates: vec![Vec::new(); cores], starts: vec![0; models.len()], best: None };
    search.go(0);
    search.best.map(|(_, starts)| starts).unwrap_or_else(|| vec![0; models.len()])
}

fn greedy(models: &[Demand], order: &[usize], cores: usize) -> Vec<usize> {
    let mut starts = vec![usize::MAX; models.len()];
    let mut placed: Vec<Demand> = Vec::new();
    let mut placed_starts: Vec<usize> = Vec::new();
    for &m in order {
        let k = models[m].cores_per_instance;
        let mut best: Option<((f64, usize), usize)> = None;
        for s in 0..=cores - k {
            let mut trial = placed.clone();
            trial.push(models[m].clone());
            let mut trial_starts = placed_starts.clone();
            trial_starts.push(s);
            let key = cost_key(&trial, &trial_starts, cores);
            if best.as_ref().is_none_or(|(b, _)| key.0 < b.0 - 1e-12 || ((key.0 - b.0).abs() <= 1e-12 && key.1 < b.1)) {
                best = Some((key, s));
            }
        }
        let s = best.map_or(0, |(_, s)| s);
        starts[m] = s;
        placed.push(models[m].clone());
        placed_starts.push(s);
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(name: &str, k: usize, service_ms: f64, rate: f64) -> Demand {
        Demand { name: name.to_owned(), cores_per_instance: k, service: service_ms / 1e3, rate }
    }

    fn layout(plan: &Plan) -> Vec<(String, Vec<usize>)> {
        plan.models.iter().map(|m| (m.name.clone(), m.starts.clone())).collect()
    }

    #[test]
    fn the_seeds_flexeg_models_get_cores_of_their_own() {
        // A, B, C, D of K = 2, 4, 3, 4 on inf1.6xlarge, equal demand and latency.
        let models: Vec<Demand> =
            [("A", 2), ("B", 4), ("C", 3), ("D", 4)].iter().map(|&(n, k)| demand(n, k, 10.0, 1.0)).collect();
        let plan = optimize(&models, 16, false).expect("fits");
        assert!(!plan.shared);
        assert_eq!(
            layout(&plan),
            [("A".into(), vec![0]), ("B".into(), vec![2]), ("C".into(), vec![6]), ("D".into(), vec![9])],
            "one instance each; the 3 cores left stay one free run"
        );
    }

    #[test]
    fn instances_follow_demand() {
        let models = vec![demand("hot", 1, 10.0, 300.0), demand("cold", 1, 10.0, 100.0)];
        let plan = optimize(&models, 8, false).expect("fits");
        let counts: Vec<usize> = plan.models.iter().map(|m| m.starts.len()).collect();
        assert_eq!(counts, [6, 2]);
        assert!((plan.min_ratio - 2.0).abs() < 1e-9, "{}", plan.min_ratio);
    }

    #[test]
    fn too_many_models_share_where_the_fewest_switches_are_expected() {
        let models = vec![demand("a", 2, 10.0, 100.0), demand("b", 2, 10.0, 100.0), demand("c", 1, 10.0, 1.0)];
        let plan = optimize(&models, 4, false).expect("placeable");
        assert!(plan.shared);
        let starts: Vec<usize> = plan.models.iter().map(|m| m.starts[0]).collect();
        assert_eq!(&starts[..2], [0, 2], "the busy ones apart");
        assert!(plan.switches_per_s < 2.0, "the light model shares: {}", plan.switches_per_s);
    }

    #[test]
    fn light_single_core_models_may_be_elastic() {
        let models = vec![demand("m", 1, 10.0, 1.0), demand("n", 1, 10.0, 100.0)];
        let plan = optimize(&models, 4, true).expect("fits");
        assert!(!plan.models[0].elastic, "one instance cannot go wide");
        let models = vec![demand("m", 1, 10.0, 50.0), demand("n", 1, 10.0, 50.0)];
        let plan = optimize(&models, 8, true).expect("fits");
        assert_eq!(plan.models.iter().map(|m| m.elastic).collect::<Vec<_>>(), [true, true], "4 instances, load 0.5");
        let models = vec![demand("m", 1, 10.0, 100.0), demand("n", 1, 10.0, 100.0)];
        let plan = optimize(&models, 8, true).expect("fits");
        assert_eq!(plan.models.iter().map(|m| m.elastic).collect::<Vec<_>>(), [false, false], "a quarter busy");
    }
}
