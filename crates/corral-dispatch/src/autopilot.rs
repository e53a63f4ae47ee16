//! The autopilot's decision (SPEC §11): every interval, from each model's demand, which
//! instances to start and which to retire so that cores follow the load. A pure function of
//! the process's models and cores; the threaded runtime calls it on a timer with its live
//! counters, the planner's simulator in virtual time with its simulated ones.
//!
//! # Demand
//!
//! A model's demand, in instances, is its arrival rate times its mean execution time, plus
//! what draining the calls waiting in its queues within one interval takes (waiting calls
//! times the mean execution time over the interval), so a backlog counts but the ordinary
//! ups and downs of a queue do not ([`Estimator`]; each interval's reading weighs half). Its
//! peak is the highest demand of the last [`SHRINK_WINDOW`] intervals: a model grows on its
//! demand at once but shrinks only on its peak, so a lull (or a load that started in the
//! middle of an interval) takes no core away.
//!
//! # Decision ([`decide`])
//!
//! 1. Each model wants a count within its bounds (`min`, `max`): one outside them is brought
//!    in; one busier than [`HIGH`] per instance grows to `demand / TARGET` instances; one whose
//!    peak would still be under [`LOW`] per instance with one instance fewer shrinks to
//!    `peak / TARGET` (at least `min`). Between, it stays: steady load makes no move, and a
//!    count reached by growing or shrinking sits inside the band, so nothing oscillates.
//!    A pinned model (`min = max`, or placed by legacy group) keeps its count and cores,
//!    once inside its bounds.
//! 2. Retirements first: a model above what it wants retires instances that hold no live
//!    sequence, preferring ones on cores that left the process, then on shared cores, then
//!    the newest. Instances on cores that left the process are relocated.
//! 3. Then growth, hottest model first (demand per instance): each new instance takes the
//!    lowest run of K consecutive cores nobody keeps (cores of retiring instances count as
//!    free: their last calls finish before the new instance's first). Without such a run, a
//!    colder model above its `min` gives up an instance, coldest first, if with one fewer it
//!    is still less busy per instance than the grower is now: the busiest of the two gets
//!    less busy, so two models never trade an instance back and forth, and equally busy
//!    ones trade none.
//!    Without that either, a model busier than [`HIGH`] adds its instance on the cores of
//!    colder models whose load leaves room for it (theirs per instance plus the grower's,
//!    at most one core's worth; executions take turns and switches are counted), never
//!    pushing a model below `min`.
//!
//! Multi-core models move as whole gangs: every instance spans K consecutive cores.

use crate::CoreSpan;

/// Above this demand per instance a model grows.
pub const HIGH: f64 = 0.8;
/// A model shrinks when, with one instance fewer, its demand per instance would stay below this.
pub const LOW: f64 = 0.5;
/// Growing or shrinking aims at this demand per instance.
pub const TARGET: f64 = 0.65;
/// Intervals whose highest demand a model must stay under to shrink.
pub const SHRINK_WINDOW: usize = 4;

/// One instance as the controller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceView {
    pub id: u64,
    pub span: CoreSpan,
    /// It holds live sequences: it retires only after they end.
    pub held: bool,
}

/// One model as the controller sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelView {
    pub cores_per_instance: usize,
    pub min: usize,
    pub max: usize,
    /// Count and cores fixed (`min = max`, or legacy groups).
    pub pinned: bool,
    pub instances: Vec<InstanceView>,
    /// Demand in instances ([`Estimator`]).
    pub demand: f64,
    /// The highest demand of the last [`SHRINK_WINDOW`] intervals ([`Estimator::peak`]).
    pub peak: f64,
}

/// One change to the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Move {
    /// Start an instance of `model` on `span`.
    Grow { model: usize, span: CoreSpan },
    /// Retire instance `id` of `model` after the calls it accepted.
    Shrink { model: usize, id: u64 },
    /// Start an instance of `model` on `span`, then retire `id` (its cores left the process).
    Relocate { model: usize, id: u64, span: CoreSpan },
}

/// The count model `m` wants (rule 1).
fn wanted(m: &ModelView) -> usize {
    let n = m.instances.len();
    if m.pinned && (m.min..=m.max).contains(&n) {
        return n;
    }
    let to_target = |d: f64| (d / TARGET).ceil().max(1.0) as usize;
    let want = if n < m.min {
        m.min
    } else if n > m.max {
        m.max
    } else if m.demand > HIGH * n as f64 {
        to_target(m.demand)
    } else if n > m.min && m.peak < LOW * (n - 1) as f64 {
        to_target(m.peak)
    } else {
        n
    };
    want.clamp(m.min.max(1), m.max.max(m.min.max(1)))
}

fn heat(m: &ModelView, count: usize) -> f64 {
    m.demand / count.max(1) as f64
}

/// The moves for `models` on a process of `cores` cores, of which `available[c]` are still
/// the process's (a core that left is not; see the module docs).
pub fn decide(models: &[ModelView], cores: usize, available: &[bool]) -> Vec<Move> {
    let usable = |span: &CoreSpan| span.cores().all(|c| c < cores && available.get(c).copied().unwrap_or(true));
    let mut moves = Vec::new();
    // Instances that stay, per model; and what each wants.
    let mut kept: Vec<Vec<InstanceView>> = models.iter().map(|m| m.instances.clone()).collect();
    let want: Vec<usize> = models.iter().map(wanted).collect();
    // Rule 2: retirements, then relocations of instances on cores that left.
    let mut relocate: Vec<(usize, u64)> = Vec::new();
    let shared_core = |core: usize, me: usize, kept: &[Vec<InstanceView>]| {
        kept.iter().enumerate().any(|(j, list)| j != me && list.iter().any(|i| i.span.contains(core)))
    };
    for m in 0..models.len() {
        let mut extra = kept[m].len().saturating_sub(want[m]);
        while extra > 0 {
            let candidates: Vec<&InstanceView> = kept[m].iter().filter(|i| !i.held).collect();
            let Some(victim) = candidates
                .iter()
                .max_by_key(|i| (!usable(&i.span), i.span.cores().any(|c| shared_core(c, m, &kept)), i.id))
                .map(|i| i.id)
            else {
                break;
            };
            kept[m].retain(|i| i.id != victim);
            moves.push(Move::Shrink { model: m, id: victim });
            extra -= 1;
        }
        for instance in kept[m].iter().filter(|i| !usable(&i.span)) {
            relocate.push((m, instance.id));
        }
    }
    let taken = |kept: &[Vec<InstanceView>]| {
        let mut used = vec![false; cores];
        for span in kept.iter().flatten().map(|i| i.span) {
            span.cores().filter(|&c| c < cores).for_each(|c| used[c] = true);
        }
        used
    };
    let free_run = |k: usize, used: &[bool]| -> Option<CoreSpan> {
        (0..=cores.saturating_sub(k))
            .map(|s| CoreSpan::new(s, k))
            .find(|span| k <= cores && usable(span) && span.cores().all(|c| !used[c]))
    };
    let mut next_id = models.iter().flat_map(|m| m.instances.iter().map(|i| i.id)).max().map_or(0, |id| id + 1);
    // Rule 3: growth (and relocations, which must happen), hottest first.
    let mut needs: Vec<(usize, Option<u64>)> = relocate.iter().map(|&(m, id)| (m, Some(id))).collect();
    let mut order: Vec<usize> = (0..models.len()).collect();
    order.sort_by(|&a, &b| heat(&models[b], kept[b].len()).total_cmp(&heat(&models[a], kept[a].len())).then(a.cmp(&b)));
    for &m in &order {
        for _ in kept[m].len()..want[m] {
            needs.push((m, None));
        }
    }
    for (m, replaces) in needs {
        let k = models[m].cores_per_instance;
        let mut span = free_run(k, &taken(&kept));
        // A colder model above its min gives up an instance, coldest first.
        while span.is_none() {
            let my_heat = heat(&models[m], kept[m].len());
            let donor = (0..models.len())
                .filter(|&j| j != m && !models[j].pinned && kept[j].len() > models[j].min)
                .filter(|&j| heat(&models[j], kept[j].len() - 1) < my_heat)
                .filter(|&j| kept[j].iter().any(|i| !i.held))
                .min_by(|&a, &b| heat(&models[a], kept[a].len()).total_cmp(&heat(&models[b], kept[b].len())));
            let Some(j) = donor else { break };
            let victim = kept[j].iter().filter(|i| !i.held).map(|i| i.id).max().expect("an instance not held");
            kept[j].retain(|i| i.id != victim);
            moves.push(Move::Shrink { model: j, id: victim });
            span = free_run(k, &taken(&kept));
        }
        // Still none: share the cores of colder models, if this one is hot (or must move).
        if span.is_none() && (replaces.is_some() || heat(&models[m], kept[m].len()) > HIGH) {
            let my_heat = heat(&models[m], kept[m].len());
            let mine_after = heat(&models[m], kept[m].len() + 1);
            span = (0..=cores.saturating_sub(k))
                .map(|s| CoreSpan::new(s, k))
                .filter(|span| k <= cores && usable(span))
                .filter(|span| !kept[m].iter().any(|i| i.span.overlaps(span)))
                .filter_map(|span| {
                    let mut load = 0.0;
                    for (j, list) in kept.iter().enumerate() {
                        for instance in list.iter().filter(|i| i.span.overlaps(&span)) {
                            let theirs = heat(&models[j], list.len());
                            if replaces.is_none() && (theirs >= my_heat || theirs + mine_after > 1.0) {
                                return None;
                            }
                            load += theirs * instance.span.count as f64;
                        }
                    }
                    Some((load, span))
                })
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.first.cmp(&b.1.first)))
                .map(|(_, span)| span);
        }
        let Some(span) = span else { continue };
        match replaces {
            Some(id) => {
                kept[m].retain(|i| i.id != id);
                moves.push(Move::Relocate { model: m, id, span });
            }
            None => moves.push(Move::Grow { model: m, span }),
        }
        kept[m].push(InstanceView { id: next_id, span, held: false });
        next_id += 1;
    }
    moves
}

/// A model's demand from its counters, interval by interval (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimator {
    /// Calls per second, smoothed.
    pub rate: f64,
    /// Mean execution time, seconds, smoothed (0 until an execution is seen).
    pub exec: f64,
    seen: bool,
    /// The last [`SHRINK_WINDOW`] demands, newest at `(next + SHRINK_WINDOW - 1) % SHRINK_WINDOW`.
    recent: [f64; SHRINK_WINDOW],
    next: usize,
}

/// What a driver counted for one model, cumulatively.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls that arrived.
    pub requests: u64,
    pub executions: u64,
    /// Total execution time, nanoseconds.
    pub compute_ns: u64,
}

impl Estimator {
    /// The estimate after an interval of `seconds` from `before` to `now` with `waiting` calls
    /// queued behind the executing ones; returns it and the demand in instances.
    pub fn update(self, before: Counts, now: Counts, seconds: f64, waiting: usize) -> (Estimator, f64) {
        let seconds = seconds.max(1e-9);
        let rate = now.requests.saturating_sub(before.requests) as f64 / seconds;
        let executions = now.executions.saturating_sub(before.executions);
        let exec = if executions > 0 {
            Some(now.compute_ns.saturating_sub(before.compute_ns) as f64 / executions as f64 / 1e9)
        } else {
            None
        };
        let blend = |old: f64, new: f64| if self.seen { 0.5 * old + 0.5 * new } else { new };
        let mut next = Estimator {
            rate: blend(self.rate, rate),
            exec: match exec {
                Some(e) if self.exec > 0.0 => 0.5 * self.exec + 0.5 * e,
                Some(e) => e,
                None => self.exec,
            },
            seen: true,
            recent: self.recent,
            next: (self.next + 1) % SHRINK_WINDOW,
        };
        let demand = (next.rate + waiting as f64 / seconds) * next.exec;
        next.recent[self.next] = demand;
        (next, demand)
    }

    /// The highest demand of the last [`SHRINK_WINDOW`] updates (fewer at first).
    pub fn peak(&self) -> f64 {
        self.recent.iter().copied().fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(k: usize, starts: &[usize], demand: f64) -> ModelView {
        ModelView {
            cores_per_instance: k,
            min: 1,
            max: 16,
            pinned: false,
            instances: starts
                .iter()
                .enumerate()
                .map(|(i, &s)| InstanceView { id: i as u64 * 100 + s as u64, span: CoreSpan::new(s, k), held: false })
                .collect(),
            demand,
            peak: demand,
        }
    }

    fn all(cores: usize) -> Vec<bool> {
        vec![true; cores]
    }

    #[test]
    fn steady_load_inside_the_band_makes_no_move() {
        let models = [model(1, &[0, 1, 2], 2.0), model(1, &[3], 0.6)];
        assert!(decide(&models, 4, &all(4)).is_empty());
    }

    #[test]
    fn a_hot_model_takes_free_cores_then_a_colder_models_above_its_min() {
        // 3.0 instances of demand on one instance: it wants 5 of the 4 cores; the cold model
        // (0.1 on 2 instances) shrinks to its min and gives its second core.
        let models = [model(1, &[0], 3.0), model(1, &[1, 2], 0.1)];
        let moves = decide(&models, 4, &all(4));
        let grows: Vec<CoreSpan> = moves
            .iter()
            .filter_map(|m| if let Move::Grow { model: 0, span } = m { Some(*span) } else { None })
            .collect();
        let shrinks = moves.iter().filter(|m| matches!(m, Move::Shrink { model: 1, .. })).count();
        assert_eq!(shrinks, 1, "down to its min: {moves:?}");
        assert_eq!(
            grows,
            [CoreSpan::new(2, 1), CoreSpan::new(3, 1), CoreSpan::new(1, 1)],
            "free cores lowest first, then a share of the cold model's last core: {moves:?}"
        );
    }

    #[test]
    fn bounds_are_kept_and_pins_hold() {
        let mut hot = model(1, &[0], 10.0);
        hot.max = 2;
        let mut cold = model(1, &[1, 2, 3], 0.0);
        cold.min = 2;
        let moves = decide(&[hot, cold], 8, &all(8));
        let grows = moves.iter().filter(|m| matches!(m, Move::Grow { .. })).count();
        let shrinks = moves.iter().filter(|m| matches!(m, Move::Shrink { .. })).count();
        assert_eq!((grows, shrinks), (1, 1), "max 2 for the hot one, min 2 for the cold one: {moves:?}");
        let mut pinned = model(1, &[0], 10.0);
        pinned.pinned = true;
        assert!(decide(&[pinned.clone()], 4, &all(4)).is_empty());
        (pinned.min, pinned.max) = (2, 2);
        let moves = decide(&[pinned], 4, &all(4));
        assert!(
            matches!(moves[..], [Move::Grow { model: 0, .. }]),
            "a pinned model below its bounds grows into them: {moves:?}"
        );
        let mut outside = model(1, &[0, 1, 2], 0.0);
        outside.max = 1;
        assert_eq!(decide(&[outside], 4, &all(4)).len(), 2, "brought into its bounds");
    }

    #[test]
    fn gangs_move_whole_on_consecutive_cores() {
        let models = [model(3, &[0], 3.0), model(1, &[3], 0.1)];
        let moves = decide(&models, 12, &all(12));
        for m in &moves {
            if let Move::Grow { model: 0, span } = m {
                assert_eq!(span.count, 3);
                assert!(span.first + 3 <= 12);
            }
        }
        // Two free runs of 3 (nc4-6, nc7-9); nc10-11 cannot hold a gang.
        assert_eq!(moves.iter().filter(|m| matches!(m, Move::Grow { model: 0, .. })).count(), 2, "{moves:?}");
    }

    #[test]
    fn sharing_only_when_no_free_core_is_left() {
        // 2 cores: the hot model cannot take the cold one's (it is at its min): it shares.
        let models = [model(1, &[0], 1.0), model(1, &[1], 0.1)];
        let moves = decide(&models, 2, &all(2));
        assert_eq!(moves, [Move::Grow { model: 0, span: CoreSpan::new(1, 1) }]);
        // With a free core it takes that instead.
        let moves = decide(&models, 3, &all(3));
        assert_eq!(moves, [Move::Grow { model: 0, span: CoreSpan::new(2, 1) }]);
        // A busy neighbour leaves no room on its core: 0.6 there plus 0.5 of the grower's.
        let models = [model(1, &[0], 1.0), model(1, &[1], 0.6)];
        assert!(decide(&models, 2, &all(2)).is_empty());
    }

    #[test]
    fn equally_busy_models_on_full_cores_trade_nothing() {
        // Four models of 3 instances on 12 cores, each above HIGH per instance (2.5 on 3) and
        // a little apart, as measured load is: none gives a core to another, none shares.
        let models: Vec<ModelView> =
            (0..4).map(|m| model(1, &[3 * m, 3 * m + 1, 3 * m + 2], 2.5 + 0.05 * m as f64)).collect();
        assert!(decide(&models, 12, &all(12)).is_empty());
    }

    #[test]
    fn instances_on_cores_that_left_relocate() {
        let models = [model(1, &[0, 1], 1.0)];
        let moves = decide(&models, 4, &[false, true, true, true]);
        assert_eq!(moves, [Move::Relocate { model: 0, id: 0, span: CoreSpan::new(2, 1) }]);
    }

    #[test]
    fn held_instances_are_not_retired() {
        let mut cold = model(1, &[0, 1], 0.0);
        cold.instances.iter_mut().for_each(|i| i.held = true);
        assert!(decide(&[cold], 2, &all(2)).is_empty());
    }

    #[test]
    fn a_lull_shorter_than_the_window_takes_no_core() {
        // 3 instances busy at 2.0 (200/s of 10 ms); then nothing arrives.
        let counts = |requests: u64| Counts { requests, executions: requests, compute_ns: requests * 10_000_000 };
        let mut estimate = Estimator::default();
        let mut seen = 0;
        let mut view = model(1, &[0, 1, 2], 0.0);
        for _ in 0..3 {
            (estimate, view.demand) = estimate.update(counts(seen), counts(seen + 100), 0.5, 0);
            seen += 100;
        }
        let mut shrunk_after = None;
        for interval in 1..=SHRINK_WINDOW + 2 {
            (estimate, view.demand) = estimate.update(counts(seen), counts(seen), 0.5, 0);
            view.peak = estimate.peak();
            if !decide(std::slice::from_ref(&view), 4, &all(4)).is_empty() {
                shrunk_after = Some(interval);
                break;
            }
        }
        // The first idle reading still holds half the busy rate (smoothing), so the window
        // runs out one interval later.
        assert_eq!(shrunk_after, Some(SHRINK_WINDOW + 1), "it shrinks once the busy readings left the window");
    }

    #[test]
    fn demand_is_rate_times_execution_time_plus_the_queue() {
        let before = Counts { requests: 0, executions: 0, compute_ns: 0 };
        let now = Counts { requests: 100, executions: 100, compute_ns: 100 * 10_000_000 };
        let (estimate, demand) = Estimator::default().update(before, now, 0.5, 50);
        assert!((estimate.rate - 200.0).abs() < 1e-9 && (estimate.exec - 0.01).abs() < 1e-12);
        assert!((demand - 3.0).abs() < 1e-9, "200/s × 10 ms, and 50 waiting × 10 ms in 0.5 s: {demand}");
    }
}
