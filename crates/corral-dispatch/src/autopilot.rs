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
//! ups and downs of a queue do not ([`Estimator`]: an interval's arrivals that chance would
//! not give the current rate, beyond three Poisson standard deviations, move the rate at
//! once; others, and the execution time, move it half way). Its
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
//!    A pinned model ([`Bounds::pinned`]: `min = max`, which a model placed by legacy group
//!    has at its count) keeps its count and cores, once inside its bounds.
//! 2. Retirements first: a model above what it wants retires instances that hold no live
//!    sequence, preferring ones on cores that left the process, then on shared cores, then
//!    the newest. Instances on cores that left the process are relocated (sharing cores if
//!    need be, whatever the load); one that fits nowhere is retired if its model has another
//!    instance.
//! 3. Then growth, one instance at a time to the model busiest per instance counting what it
//!    was given so far (so free cores are shared out in proportion): each new instance takes the
//!    lowest run of K consecutive cores nobody keeps (cores of retiring instances count as
//!    free: their last calls finish before the new instance's first). Without such a run, a
//!    colder model above its `min` gives up an instance, coldest first, if with one fewer it
//!    is still less busy per instance than the grower is now, by [`TRADE_MARGIN`]: the
//!    busiest of the two gets less busy, so two models never trade an instance back and
//!    forth (not even on the wobble of measured demand), and equally busy ones trade none.
//!    Without that either, a model busier than [`HIGH`] adds its instance on the cores of
//!    colder models where each core's load leaves room for it (the per-instance demand of
//!    every instance on the core plus the grower's, at most one core's worth; executions
//!    take turns and switches are counted), never pushing a model below `min`. Instances
//!    given up for a grower are given up only if they free a run for it, and never one that
//!    this decision itself starts.
//!
//! Multi-core models move as whole gangs: every instance spans K consecutive cores.
//!
//! # Views
//!
//! Both drivers build a model's [`ModelView`] with the same two functions, from what each
//! knows of it: [`bounds`] once when the model is loaded (its own bounds or the default, cut
//! to what the process's cores hold; a model placed by group pinned at its count), and
//! [`view`] every interval (those bounds, its instances, its demand).

use crate::CoreSpan;

/// Above this demand per instance a model grows.
pub const HIGH: f64 = 0.8;
/// A model shrinks when, with one instance fewer, its demand per instance would stay below this.
pub const LOW: f64 = 0.5;
/// Growing or shrinking aims at this demand per instance.
pub const TARGET: f64 = 0.65;
/// Intervals whose highest demand a model must stay under to shrink.
pub const SHRINK_WINDOW: usize = 4;
/// How much busier per instance a grower must be than a donor would be after giving one up:
/// measured demand wobbles, and two models near each other must not pass an instance back
/// and forth on the wobble.
pub const TRADE_MARGIN: f64 = 0.15;

/// One instance as the controller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceView {
    pub id: u64,
    pub span: CoreSpan,
    /// It holds live sequences: it retires only after they end.
    pub held: bool,
}

/// A model's bounds, in instances of K cores (SPEC §11): the autopilot keeps at least `min`
/// and at most `max` of them. Made by [`bounds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub min: usize,
    pub max: usize,
}

impl Bounds {
    /// Count and cores fixed: `min = max`, the one rule for "pinned" (SPEC §11: "`min = max`
    /// pins a model; models placed by `group` are pinned"). A model placed by group is pinned
    /// by its bounds too, which [`bounds`] sets to its count for both drivers, so no flag beside
    /// the bounds can say otherwise.
    pub fn pinned(&self) -> bool {
        self.min == self.max
    }
}

/// How many instances of `cores_per_instance` cores a process of `cores` cores holds (at
/// least 1): the default `max`, and the most any `max` may be.
pub fn fit(cores: usize, cores_per_instance: usize) -> usize {
    (cores / cores_per_instance.max(1)).max(1)
}

/// A model's bounds on a process of `cores` cores: the bounds `asked` (else 1 to [`fit`]),
/// `max` cut to what fits (and `min` to `max`); a model placed by group (`grouped`: the count
/// its group placed) is pinned at that count, whatever it asked. The drivers check what is
/// asked themselves (`1 <= min <= max`: the runtime refuses a load, a repository a config);
/// for anything else this still gives `min <= max`.
pub fn bounds(
    asked: Option<(usize, usize)>,
    cores: usize,
    cores_per_instance: usize,
    grouped: Option<usize>,
) -> Bounds {
    if let Some(count) = grouped {
        return Bounds { min: count, max: count };
    }
    let fit = fit(cores, cores_per_instance);
    let (min, max) = asked.unwrap_or((1, fit));
    let max = max.min(fit);
    Bounds { min: min.min(max), max }
}

/// One model as the controller sees it, from its `bounds`, its instances and its `demand`
/// this interval. Without a demand (`None`: the autopilot has no turn, only cores that left
/// the process force moves) every model keeps its count: its bounds are its count, and its
/// demand keeps it there.
pub fn view(
    bounds: Bounds,
    cores_per_instance: usize,
    instances: Vec<InstanceView>,
    demand: Option<Demand>,
) -> ModelView {
    let n = instances.len();
    let (bounds, demand) = match demand {
        Some(demand) => (bounds, demand),
        None => (Bounds { min: n, max: n }, Demand { now: n as f64 * TARGET, peak: n as f64 * TARGET }),
    };
    ModelView { cores_per_instance, min: bounds.min, max: bounds.max, instances, demand: demand.now, peak: demand.peak }
}

/// One model as the controller sees it (made by [`view`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelView {
    pub cores_per_instance: usize,
    pub min: usize,
    pub max: usize,
    pub instances: Vec<InstanceView>,
    /// Demand in instances ([`Estimator`]).
    pub demand: f64,
    /// The highest demand of the last [`SHRINK_WINDOW`] intervals ([`Demand::peak`]).
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

impl ModelView {
    /// Count and cores fixed ([`Bounds::pinned`]).
    pub fn pinned(&self) -> bool {
        Bounds { min: self.min, max: self.max }.pinned()
    }
}

/// The count model `m` wants (rule 1).
fn wanted(m: &ModelView) -> usize {
    let n = m.instances.len();
    if m.pinned() && (m.min..=m.max).contains(&n) {
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
        // A held instance stays until its sequences end (the driver could not retire it).
        for instance in kept[m].iter().filter(|i| !usable(&i.span) && !i.held) {
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
    // Rule 3: relocations (which must happen), then growth one instance at a time, each to
    // the model busiest per instance with what it has been given so far.
    let mut needs: Vec<(usize, Option<u64>)> = relocate.iter().map(|&(m, id)| (m, Some(id))).collect();
    let mut counts: Vec<usize> = kept.iter().map(Vec::len).collect();
    while let Some(m) = (0..models.len())
        .filter(|&m| counts[m] < want[m])
        .max_by(|&a, &b| heat(&models[a], counts[a]).total_cmp(&heat(&models[b], counts[b])).then(b.cmp(&a)))
    {
        needs.push((m, None));
        counts[m] += 1;
    }
    // Instances this call starts: the driver has no id for them yet, so none is a donor's.
    let mut started: Vec<u64> = Vec::new();
    for (m, replaces) in needs {
        let k = models[m].cores_per_instance;
        let mut span = free_run(k, &taken(&kept));
        // A colder model above its min gives up an instance, coldest first; planned on a copy
        // and kept only if the instances given up free a run of K for this one.
        if span.is_none() {
            let mut scratch = kept.clone();
            let mut given = Vec::new();
            loop {
                let my_heat = heat(&models[m], scratch[m].len());
                let givable = |j: usize, scratch: &[Vec<InstanceView>]| -> Vec<InstanceView> {
                    scratch[j].iter().filter(|i| !i.held && !started.contains(&i.id)).cloned().collect()
                };
                let donor = (0..models.len())
                    .filter(|&j| j != m && !models[j].pinned() && scratch[j].len() > models[j].min)
                    .filter(|&j| heat(&models[j], scratch[j].len() - 1) + TRADE_MARGIN < my_heat)
                    .filter(|&j| !givable(j, &scratch).is_empty())
                    .min_by(|&a, &b| heat(&models[a], scratch[a].len()).total_cmp(&heat(&models[b], scratch[b].len())));
                let Some(j) = donor else { break };
                // The instance whose cores complete a free run if there is one, else the newest.
                let frees_a_run = |victim: u64| {
                    let mut without = scratch.clone();
                    without[j].retain(|i| i.id != victim);
                    free_run(k, &taken(&without)).is_some()
                };
                let candidates = givable(j, &scratch);
                let victim = candidates
                    .iter()
                    .max_by_key(|i| (frees_a_run(i.id), i.id))
                    .map(|i| i.id)
                    .expect("a donor has an instance to give");
                scratch[j].retain(|i| i.id != victim);
                given.push(Move::Shrink { model: j, id: victim });
                span = free_run(k, &taken(&scratch));
                if span.is_some() {
                    kept = scratch;
                    moves.extend(given);
                    break;
                }
            }
        }
        // Still none: share the cores of colder models, if this one is hot (or must move),
        // where each core's load leaves room for one more instance of it.
        if span.is_none() && (replaces.is_some() || heat(&models[m], kept[m].len()) > HIGH) {
            let my_heat = heat(&models[m], kept[m].len());
            let mine_after = heat(&models[m], kept[m].len() + 1);
            span = (0..=cores.saturating_sub(k))
                .map(|s| CoreSpan::new(s, k))
                .filter(|span| k <= cores && usable(span))
                .filter(|span| !kept[m].iter().any(|i| i.span.overlaps(span)))
                .filter_map(|span| {
                    let mut load = 0.0;
                    for core in span.cores() {
                        let mut on_core = 0.0;
                        for (j, list) in kept.iter().enumerate() {
                            for _ in list.iter().filter(|i| i.span.contains(core)) {
                                let theirs = heat(&models[j], list.len());
                                if replaces.is_none() && theirs >= my_heat {
                                    return None;
                                }
                                on_core += theirs;
                            }
                        }
                        if replaces.is_none() && on_core + mine_after > 1.0 {
                            return None;
                        }
                        load += on_core;
                    }
                    Some((load, span))
                })
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.first.cmp(&b.1.first)))
                .map(|(_, span)| span);
        }
        let Some(span) = span else {
            // An instance on a core that left, with nowhere to go: it is retired if its model
            // has another instance (the calls go there), else it stays where it is.
            if let Some(id) = replaces
                && kept[m].len() > 1
                && kept[m].iter().any(|i| i.id == id && !i.held)
            {
                kept[m].retain(|i| i.id != id);
                moves.push(Move::Shrink { model: m, id });
            }
            continue;
        };
        match replaces {
            Some(id) => {
                kept[m].retain(|i| i.id != id);
                moves.push(Move::Relocate { model: m, id, span });
            }
            None => moves.push(Move::Grow { model: m, span }),
        }
        kept[m].push(InstanceView { id: next_id, span, held: false });
        started.push(next_id);
        next_id += 1;
    }
    moves
}

/// A model's demand from its counters, interval by interval (see the module docs): one per
/// loaded model, fed every interval's [`Reading`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimator {
    /// Calls per second: a shift beyond chance is taken at once, else half per interval.
    pub rate: f64,
    /// Mean execution time, seconds, smoothed (0 until an execution is seen).
    pub exec: f64,
    /// The counts at the previous reading; `None` before the first.
    last: Option<Counts>,
    /// The last [`SHRINK_WINDOW`] demands, the next to overwrite at `next`.
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

/// One model at the end of an interval, as a driver sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub counts: Counts,
    /// The interval's length.
    pub seconds: f64,
    /// Calls queued or executing on its instances.
    pub in_flight: usize,
    pub instances: usize,
}

/// A model's demand now and its peak over the last [`SHRINK_WINDOW`] intervals, in instances.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Demand {
    pub now: f64,
    pub peak: f64,
}

impl Estimator {
    /// Takes one interval's reading. The first reading (nothing to compare with yet), and one
    /// of a model that has calls but no finished execution to time yet, gives a demand at
    /// [`TARGET`] per instance: no move either way. A model never called is idle.
    pub fn observe(&mut self, reading: Reading) -> Demand {
        let keep = reading.instances as f64 * TARGET;
        let first = self.last.is_none();
        let demand = match self.last.replace(reading.counts) {
            None => keep,
            Some(before) => {
                let seconds = reading.seconds.max(1e-9);
                let now = reading.counts;
                let arrived = now.requests.saturating_sub(before.requests) as f64;
                let rate = arrived / seconds;
                // Arrivals beyond what chance gives a steady rate (3 standard deviations of a
                // Poisson count, plus 2 for small counts) are a shift in load: taken at once.
                let expected = self.rate * seconds;
                let shifted = (arrived - expected).abs() > 3.0 * expected.sqrt() + 2.0;
                self.rate = if shifted { rate } else { 0.5 * self.rate + 0.5 * rate };
                let executions = now.executions.saturating_sub(before.executions);
                if executions > 0 {
                    let exec = now.compute_ns.saturating_sub(before.compute_ns) as f64 / executions as f64 / 1e9;
                    self.exec = if self.exec > 0.0 { 0.5 * self.exec + 0.5 * exec } else { exec };
                }
                let waiting = reading.in_flight.saturating_sub(reading.instances);
                if self.exec > 0.0 {
                    (self.rate + waiting as f64 / seconds) * self.exec
                } else if self.rate == 0.0 && reading.in_flight == 0 {
                    0.0 // never called: idle
                } else {
                    keep // called, but no execution has ended yet to time
                }
            }
        };
        if first {
            // The first reading fills the window: a model that was just loaded keeps its
            // instances for the window's length at least.
            self.recent = [demand; SHRINK_WINDOW];
        }
        self.recent[self.next] = demand;
        self.next = (self.next + 1) % SHRINK_WINDOW;
        Demand { now: demand, peak: self.recent.iter().copied().fold(0.0, f64::max) }
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
        (pinned.min, pinned.max) = (1, 1);
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
    fn bounds_default_to_what_fits_and_a_group_pins_its_count() {
        let b = |min, max| Bounds { min, max };
        assert_eq!(bounds(None, 8, 2, None), b(1, 4), "1 to what 8 cores hold of K = 2");
        assert_eq!(bounds(None, 1, 4, None), b(1, 1), "at least one instance, even where K > cores");
        assert_eq!(bounds(Some((2, 3)), 8, 1, None), b(2, 3));
        assert_eq!(bounds(Some((2, usize::MAX)), 8, 1, None), b(2, 8), "max cut to what fits");
        assert_eq!(bounds(Some((6, 9)), 8, 2, None), b(4, 4), "min cut to max");
        assert_eq!(bounds(Some((1, 8)), 8, 1, Some(3)), b(3, 3), "placed by group: its count, whatever it asked");
        assert!(bounds(Some((2, 2)), 8, 1, None).pinned() && bounds(None, 8, 1, Some(2)).pinned());
        assert!(!bounds(None, 8, 1, None).pinned());
    }

    #[test]
    fn without_a_demand_a_view_keeps_its_count() {
        let instances = vec![InstanceView { id: 0, span: CoreSpan::new(0, 1), held: false }];
        let kept = view(Bounds { min: 2, max: 4 }, 1, instances.clone(), None);
        assert_eq!((kept.min, kept.max, kept.demand, kept.peak), (1, 1, TARGET, TARGET));
        assert!(kept.pinned() && decide(&[kept], 4, &all(4)).is_empty(), "not even brought into its bounds");
        let demand = Demand { now: 3.0, peak: 3.5 };
        let seen = view(Bounds { min: 2, max: 4 }, 1, instances, Some(demand));
        assert_eq!((seen.min, seen.max, seen.demand, seen.peak, seen.pinned()), (2, 4, 3.0, 3.5, false));
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
    fn instances_are_given_up_only_when_they_free_a_run() {
        // 5 cores: A (K = 2) on nc0-1 is hot; B could give up nc4, but nc3 is C's (at its
        // min), so no run of 2 would come free: B keeps it (else it would grow back next
        // interval, and again).
        let models = [model(2, &[0], 3.0), model(1, &[2, 4], 0.9), model(1, &[3], 0.5)];
        let moves = decide(&models, 5, &all(5));
        assert!(!moves.iter().any(|m| matches!(m, Move::Shrink { .. })), "{moves:?}");
    }

    #[test]
    fn sharing_counts_every_instance_on_the_core() {
        // B and C already fill nc1 together (0.5 each): a hot A finds no room there.
        let models = [model(1, &[0], 0.9), model(1, &[1], 0.5), model(1, &[1], 0.5)];
        assert!(decide(&models, 2, &all(2)).is_empty());
    }

    #[test]
    fn an_instance_started_by_a_decision_is_not_given_up_in_it() {
        // A grows first (hotter) into the free cores; B then finds none, and the only
        // instances above A's min are the ones this decision starts: B shares or waits,
        // nothing is retired.
        let models = [model(1, &[0], 2.0), model(1, &[1], 1.9)];
        let moves = decide(&models, 5, &all(5));
        assert!(!moves.iter().any(|m| matches!(m, Move::Shrink { .. })), "{moves:?}");
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
    fn an_instance_on_a_core_that_left_with_nowhere_to_go_is_retired() {
        // 2 cores, nc0 left: the model's instance there cannot join its own on nc1.
        let models = [model(1, &[0, 1], 1.0)];
        let moves = decide(&models, 2, &[false, true]);
        assert!(matches!(moves[..], [Move::Shrink { model: 0, id: 0 }]), "{moves:?}");
        // Another model's core is shared instead.
        let models = [model(1, &[0], 1.0), model(1, &[1], 0.1)];
        let moves = decide(&models, 2, &[false, true]);
        assert!(
            matches!(moves[..], [Move::Relocate { model: 0, id: 0, span: CoreSpan { first: 1, count: 1 } }]),
            "{moves:?}"
        );
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
        let reading = |requests| Reading { counts: counts(requests), seconds: 0.5, in_flight: 0, instances: 3 };
        let mut estimate = Estimator::default();
        let mut view = model(1, &[0, 1, 2], 0.0);
        for interval in 0..=SHRINK_WINDOW {
            let demand = estimate.observe(reading(100 * interval as u64));
            (view.demand, view.peak) = (demand.now, demand.peak);
        }
        assert!((view.demand - 2.0).abs() < 1e-9, "{view:?}");
        let mut shrunk_after = None;
        for interval in 1..=SHRINK_WINDOW + 2 {
            let demand = estimate.observe(reading(100 * SHRINK_WINDOW as u64));
            (view.demand, view.peak) = (demand.now, demand.peak);
            if !decide(std::slice::from_ref(&view), 4, &all(4)).is_empty() {
                shrunk_after = Some(interval);
                break;
            }
        }
        // The stop is a shift (taken at once): the busy readings leave the window after
        // SHRINK_WINDOW idle ones.
        assert_eq!(shrunk_after, Some(SHRINK_WINDOW), "it shrinks once the busy readings left the window");
    }

    #[test]
    fn without_a_timed_execution_a_called_model_keeps_its_count_and_an_uncalled_one_is_idle() {
        let reading = |requests, in_flight| Reading {
            counts: Counts { requests, executions: 0, compute_ns: 0 },
            seconds: 0.5,
            in_flight,
            instances: 4,
        };
        let mut slow = Estimator::default();
        slow.observe(reading(0, 0));
        assert_eq!(slow.observe(reading(3, 3)).now, 4.0 * TARGET, "3 calls, none finished: unknown");
        let mut idle = Estimator::default();
        idle.observe(reading(0, 0));
        assert_eq!(idle.observe(reading(0, 0)).now, 0.0);
    }

    #[test]
    fn demand_is_rate_times_execution_time_plus_the_queue() {
        let mut estimate = Estimator::default();
        let first = estimate.observe(Reading { counts: Counts::default(), seconds: 0.5, in_flight: 0, instances: 2 });
        assert_eq!(first.now, 2.0 * TARGET, "nothing to compare with yet: no move either way");
        let now = Counts { requests: 100, executions: 100, compute_ns: 100 * 10_000_000 };
        let demand = estimate.observe(Reading { counts: now, seconds: 0.5, in_flight: 52, instances: 2 });
        assert!((estimate.rate - 200.0).abs() < 1e-9 && (estimate.exec - 0.01).abs() < 1e-12);
        assert!((demand.now - 3.0).abs() < 1e-9, "200/s × 10 ms, and 50 waiting × 10 ms in 0.5 s: {demand:?}");
        // 110 arrivals where 100 were expected: chance; half way. 200: a shift; at once.
        let mut counts = now;
        let mut step = |arrived: u64| {
            counts.requests += arrived;
            estimate.observe(Reading { counts, seconds: 0.5, in_flight: 0, instances: 2 });
            estimate.rate
        };
        assert!((step(110) - 210.0).abs() < 1e-9);
        assert!((step(200) - 400.0).abs() < 1e-9);
        assert!((step(0) - 0.0).abs() < 1e-9, "a stop is a shift too");
    }
}
