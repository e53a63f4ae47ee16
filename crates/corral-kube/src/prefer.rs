//! Which cores the plugin prefers to hand a container (`GetPreferredAllocation`): pure, so
//! that every case is a one-line test.
//!
//! The rule is SPEC §3's for a core count, as Neuron's scheduler extender keeps a pod's
//! cores contiguous: the lowest-index run of N consecutive available cores that holds every
//! `must_include` core. When no such run exists (the available cores are fragmented), the
//! set of N that holds them in the fewest runs: each must-include core's run of available
//! cores is used first (growing around them, lowest first), then the longest other runs,
//! lowest first among equals. The kubelet may still choose otherwise; this is advice.

use std::collections::BTreeSet;

/// `size` cores from `available`, including every one of `must` (which the kubelet takes
/// from `available`); ascending. Fewer than `size` only when fewer are available.
pub fn preferred(available: &[usize], must: &[usize], size: usize) -> Vec<usize> {
    let available: BTreeSet<usize> = available.iter().chain(must).copied().collect();
    let must: BTreeSet<usize> = must.iter().copied().collect();
    if size <= must.len() || size >= available.len() {
        // Nothing to choose: the kubelet asked for its must-includes, or for everything.
        let all = if size <= must.len() { must } else { available };
        return all.into_iter().collect();
    }
    if let Some(run) = lowest_run(&available, &must, size) {
        return run;
    }
    fewest_runs(&available, &must, size)
}

/// The lowest-index window of `size` consecutive available cores that holds `must`.
fn lowest_run(available: &BTreeSet<usize>, must: &BTreeSet<usize>, size: usize) -> Option<Vec<usize>> {
    let (lo, hi) = match (must.first(), must.last()) {
        (Some(&lo), Some(&hi)) => (lo, hi),
        _ => (usize::MAX, 0),
    };
    runs(available).into_iter().find_map(|(first, count)| {
        let last = first + count - 1;
        if count < size {
            return None;
        }
        if must.is_empty() {
            return Some((first..first + size).collect());
        }
        if lo < first || hi > last || hi - lo + 1 > size {
            return None;
        }
        // The lowest start whose window still reaches `hi`.
        let start = first.max((hi + 1).saturating_sub(size));
        Some((start..start + size).collect())
    })
}

/// Maximal runs of consecutive cores in `cores`: (first, count), ascending.
fn runs(cores: &BTreeSet<usize>) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &core in cores {
        match runs.last_mut() {
            Some((first, count)) if *first + *count == core => *count += 1,
            _ => runs.push((core, 1)),
        }
    }
    runs
}

fn fewest_runs(available: &BTreeSet<usize>, must: &BTreeSet<usize>, size: usize) -> Vec<usize> {
    let mut chosen: BTreeSet<usize> = must.clone();
    let all_runs = runs(available);
    // 1. Runs that hold must-include cores: first the span between their must-includes
    //    (taking it joins them into one run), then growth around it, lowest first.
    let (with_must, without): (Vec<_>, Vec<_>) =
        all_runs.into_iter().partition(|&(first, count)| must.range(first..first + count).next().is_some());
    let mut joined = Vec::new();
    for &(first, count) in &with_must {
        let inside: Vec<usize> = must.range(first..first + count).copied().collect();
        let (lo, hi) = (inside[0], inside[inside.len() - 1]);
        let missing = (lo..=hi).filter(|c| !chosen.contains(c)).count();
        if chosen.len() + missing <= size {
            chosen.extend(lo..=hi);
            joined.push((first, count, lo, hi));
        }
    }
    for &(first, count, lo, hi) in &joined {
        let below = (first..lo).rev();
        let above = hi + 1..first + count;
        for core in below.chain(above) {
            if chosen.len() >= size {
                break;
            }
            chosen.insert(core);
        }
    }
    // 2. The longest other runs, lowest first among equals, each from its low end.
    let mut others = without;
    others.sort_by_key(|&(first, count)| (std::cmp::Reverse(count), first));
    for (first, count) in others {
        for core in first..first + count {
            if chosen.len() >= size {
                break;
            }
            chosen.insert(core);
        }
    }
    // 3. Must-includes too far apart to join: the lowest cores next to a chosen one, else
    //    the lowest left.
    while chosen.len() < size {
        let next_to = |c: &usize| chosen.contains(&(c + 1)) || c.checked_sub(1).is_some_and(|b| chosen.contains(&b));
        let free = available.iter().filter(|c| !chosen.contains(c));
        let Some(&core) = free.clone().find(|c| next_to(c)).or_else(|| free.clone().next()) else { break };
        chosen.insert(core);
    }
    chosen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `available`, `must` and the answer as core lists (`0-3,6`), `size` cores.
    #[track_caller]
    fn check(available: &str, must: &str, size: usize, expect: &str) {
        let parse = |list: &str| -> Vec<usize> {
            if list.is_empty() {
                return Vec::new();
            }
            corral_cores::parse_core_list(list).expect("a core list").iter().collect()
        };
        let got = preferred(&parse(available), &parse(must), size);
        let got = corral_cores::CoreSet::from_indices(got).map(|s| s.to_env_value()).unwrap_or_default();
        assert_eq!(got, expect, "available {available}, must {must}, size {size}");
    }

    #[test]
    fn the_lowest_run_that_holds_the_must_includes() {
        check("0-7", "", 2, "0-1");
        check("0-7", "", 8, "0-7");
        check("0-7", "5", 2, "4-5");
        check("0-7", "0", 3, "0-2");
        check("0-7", "3,5", 3, "3-5");
        check("0-7", "3,5", 4, "2-5");
        check("1,2,4-7", "", 3, "4-6");
        check("0,2-3,5-7", "6", 2, "5-6");
        check("0-3", "1", 1, "1");
    }

    #[test]
    fn fragmented_cores_in_the_fewest_runs() {
        check("0,2,4-5", "", 3, "0,4-5");
        check("0,2,4,6", "", 2, "0,2");
        check("0,2-3,6", "6", 3, "2-3,6");
        check("0-1,3,5-6", "3", 3, "0-1,3");
        check("0-7", "0,7", 3, "0-1,7");
        check("0-2,4,6-9", "4", 4, "4,6-8");
    }
}
