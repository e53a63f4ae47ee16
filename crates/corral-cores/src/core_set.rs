//! Sets of cores: a consecutive [`CoreRange`] and a [`CoreSet`] of any cores, with the
//! parser of the list syntax that `VISIBLE_CORES`, owner records and lease tickets share.
//!
//! A `CoreSet` is kept as sorted, merged runs, never as one entry per core: a value such as
//! `0-4000000000` (typed by a user or planted in an owner record by a hostile one) costs what
//! its text costs, and is refused by the device-size check before anything is expanded.
//! A process numbers the cores of its set `0..len()` in ascending global order (SPEC §3).

use std::fmt;

use crate::list;

/// A run of consecutive cores, by global (device) or process-relative index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoreRange {
    pub first: usize,
    /// At least 1.
    pub count: usize,
}

impl CoreRange {
    pub fn new(first: usize, count: usize) -> CoreRange {
        debug_assert!(count >= 1, "a core range is never empty");
        CoreRange { first, count }
    }

    /// One past the last core.
    pub fn end(&self) -> usize {
        self.first + self.count
    }

    pub fn last(&self) -> usize {
        self.end() - 1
    }

    pub fn contains(&self, index: usize) -> bool {
        (self.first..self.end()).contains(&index)
    }

    pub fn indices(&self) -> std::ops::Range<usize> {
        self.first..self.end()
    }

    /// The form environment variables take: `4` or `4-5`.
    pub fn to_env_value(&self) -> String {
        list::format_ranges([(self.first, self.last())])
    }
}

/// Displays as `nc4` or `nc4-nc5`.
impl fmt::Display for CoreRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 1 { write!(f, "nc{}", self.first) } else { write!(f, "nc{}-nc{}", self.first, self.last()) }
    }
}

/// A non-empty set of cores by global index, consecutive or not (`1,3`, `0-1,4-5`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CoreSet {
    /// Ascending, disjoint and not adjacent (adjacent runs are merged); never empty.
    runs: Vec<CoreRange>,
}

impl CoreSet {
    /// The set of `indices` (any order, no duplicates needed); `None` when empty.
    pub fn from_indices(indices: impl IntoIterator<Item = usize>) -> Option<CoreSet> {
        let mut sorted: Vec<usize> = indices.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut runs: Vec<CoreRange> = Vec::new();
        for index in sorted {
            match runs.last_mut() {
                Some(run) if run.end() == index => run.count += 1,
                _ => runs.push(CoreRange::new(index, 1)),
            }
        }
        (!runs.is_empty()).then_some(CoreSet { runs })
    }

    /// The consecutive runs, ascending.
    pub fn runs(&self) -> &[CoreRange] {
        &self.runs
    }

    /// Number of cores. Only call on a set checked against a device (it is then small).
    pub fn len(&self) -> usize {
        self.runs.iter().map(|r| r.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn first(&self) -> usize {
        self.runs[0].first
    }

    pub fn last(&self) -> usize {
        self.runs[self.runs.len() - 1].last()
    }

    pub fn contains(&self, index: usize) -> bool {
        self.runs.iter().any(|r| r.contains(index))
    }

    /// True when every core of `other` is in this set.
    pub fn contains_set(&self, other: &CoreSet) -> bool {
        other.runs.iter().all(|o| self.runs.iter().any(|r| r.first <= o.first && o.end() <= r.end()))
    }

    /// Global indices, ascending: process core `i` is the `i`-th.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.runs.iter().flat_map(CoreRange::indices)
    }

    /// The global index of process core `relative`.
    pub fn global(&self, relative: usize) -> Option<usize> {
        let mut skipped = 0;
        for run in &self.runs {
            if relative < skipped + run.count {
                return Some(run.first + relative - skipped);
            }
            skipped += run.count;
        }
        None
    }

    /// The process index of global core `index`, if it is in the set.
    pub fn relative(&self, index: usize) -> Option<usize> {
        let mut skipped = 0;
        for run in &self.runs {
            if run.contains(index) {
                return Some(skipped + index - run.first);
            }
            skipped += run.count;
        }
        None
    }

    /// The form environment variables take: `1,3` or `0-3`.
    pub fn to_env_value(&self) -> String {
        list::format_ranges(self.runs.iter().map(|r| (r.first, r.last())))
    }
}

impl From<CoreRange> for CoreSet {
    fn from(range: CoreRange) -> CoreSet {
        CoreSet { runs: vec![range] }
    }
}

/// Displays as `nc4`, `nc4-nc5` or `nc1,nc3`.
impl fmt::Display for CoreSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, run) in self.runs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{run}")?;
        }
        Ok(())
    }
}

/// No device has a core past this index; larger ones are refused while parsing, so that
/// index arithmetic (`first + count`) can never overflow.
const CORE_INDEX_MAX: usize = u32::MAX as usize;

/// Parses `4`, `4-5`, `0,1,2`, `0-2,3`, `1,3` into a set of global cores. Parts may come in
/// any order; a core listed twice is an error (a typo more often than an intent).
pub fn parse_core_list(text: &str) -> Result<CoreSet, String> {
    if text.trim().is_empty() {
        return Err("the value is empty".to_owned());
    }
    // The number of parts is bounded by the text; ranges stay ranges.
    let index = |s: &str| match s.parse::<usize>() {
        Ok(core) if core > CORE_INDEX_MAX => Err(format!("core {core} is past any device")),
        Ok(core) => Ok(core),
        Err(_) => Err(format!("`{s}` is not a core index")),
    };
    let mut runs: Vec<CoreRange> =
        list::ranges(text, index)?.into_iter().map(|(lo, hi)| CoreRange::new(lo, hi - lo + 1)).collect();
    runs.sort_unstable();
    let mut merged: Vec<CoreRange> = Vec::with_capacity(runs.len());
    for run in runs {
        match merged.last_mut() {
            Some(last) if run.first < last.end() => return Err(format!("core {} is listed twice", run.first)),
            Some(last) if run.first == last.end() => last.count += run.count,
            _ => merged.push(run),
        }
    }
    Ok(CoreSet { runs: merged })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_into_merged_runs() {
        let set = |text: &str| parse_core_list(text).map(|s| (s.to_string(), s.to_env_value()));
        assert_eq!(set("4"), Ok(("nc4".into(), "4".into())));
        assert_eq!(set("3,0-2"), Ok(("nc0-nc3".into(), "0-3".into())));
        assert_eq!(set("3,1"), Ok(("nc1,nc3".into(), "1,3".into())));
        assert_eq!(set("0-1, 4-5"), Ok(("nc0-nc1,nc4-nc5".into(), "0-1,4-5".into())));
        assert_eq!(set("0-2,2"), Err("core 2 is listed twice".into()));
        assert_eq!(set("4-2"), Err("range 4-2 runs backwards".into()));
        assert_eq!(set("0-4000000000").map(|(_, env)| env), Ok("0-4000000000".into()), "never expanded");
    }

    #[test]
    fn process_numbering_follows_ascending_global_order() {
        let set = parse_core_list("6,1,3-4").expect("valid");
        assert_eq!(set.iter().collect::<Vec<_>>(), [1, 3, 4, 6]);
        assert_eq!((0..5).map(|i| set.global(i)).collect::<Vec<_>>(), [Some(1), Some(3), Some(4), Some(6), None]);
        assert_eq!([1, 2, 6].map(|g| set.relative(g)), [Some(0), None, Some(3)]);
        assert!(set.contains_set(&parse_core_list("3-4,6").expect("valid")));
        assert!(!set.contains_set(&parse_core_list("2-3").expect("valid")));
        assert_eq!(CoreSet::from_indices([4, 1, 2]).map(|s| s.to_string()), Some("nc1-nc2,nc4".to_owned()));
    }
}
