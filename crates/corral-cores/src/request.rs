//! What a process asks for: parsing and resolving core requests (SPEC §3).
//!
//! Requests come from three layers, lowest first: the environment (a corral name beats its
//! Neuron alias), then explicit arguments (CLI flags or the Rust API). Resolution is two
//! steps so that nothing is taken before everything is known to be valid:
//!
//! 1. [`Sources`] collects raw values with where they came from (`CORRAL_NUM_CORES=4`,
//!    `--visible-cores 4-5`); an explicit core request replaces both environment core
//!    requests, explicit groups replace environment groups.
//! 2. [`Sources::resolve`] parses every value present (a malformed value fails even when a
//!    higher-precedence one would win), applies VISIBLE over NUM over default, checks the
//!    group rules and yields a [`Request`]; [`Request::check`] then checks it against the
//!    device size. Every error quotes the variable (or flag) and its value.

use std::fmt;

#[cfg(test)]
use crate::core_set::CoreRange;
use crate::core_set::{CoreSet, parse_core_list};

pub const VISIBLE_CORES: &str = "CORRAL_VISIBLE_CORES";
pub const VISIBLE_CORES_NEURON: &str = "NEURON_RT_VISIBLE_CORES";
pub const NUM_CORES: &str = "CORRAL_NUM_CORES";
pub const NUM_CORES_NEURON: &str = "NEURON_RT_NUM_CORES";
pub const GROUP_SIZES: &str = "CORRAL_GROUP_SIZES";
pub const GROUP_SIZES_NEURON: &str = "NEURONCORE_GROUP_SIZES";

/// Which cores to take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreRequest {
    /// Every core of the device.
    All,
    /// The first (lowest-index) run of this many consecutive free cores.
    Num(usize),
    /// Exactly these cores, consecutive or not.
    Visible(CoreSet),
    /// This many cores, as a run when one is free, else the lowest free ones: the default
    /// under a CPU quota (a shared pool's cpuset often has holes).
    AnyOf(usize),
}

/// A resolved request: cores, optional legacy groups, and how it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub cores: CoreRequest,
    /// Legacy NeuronCore group sizes (SPEC §5.2), cut from the start of the taken cores.
    pub groups: Option<Vec<usize>>,
    /// How the request was written, quoted in messages: `CORRAL_NUM_CORES=4`, `default`.
    pub origin: String,
}

impl Request {
    pub fn all() -> Request {
        Request { cores: CoreRequest::All, groups: None, origin: "default (every core)".to_owned() }
    }

    pub fn num(count: usize) -> Request {
        Request { cores: CoreRequest::Num(count), groups: None, origin: format!("{count} cores") }
    }

    pub fn visible(cores: impl Into<CoreSet>) -> Request {
        let cores = cores.into();
        let origin = format!("cores {}", cores.to_env_value());
        Request { cores: CoreRequest::Visible(cores), groups: None, origin }
    }

    /// How many cores the request takes on a device of `device_len` cores.
    pub fn core_count(&self, device_len: usize) -> usize {
        match (&self.cores, &self.groups) {
            (CoreRequest::Visible(set), _) => set.len(),
            (CoreRequest::Num(n) | CoreRequest::AnyOf(n), _) => *n,
            (CoreRequest::All, Some(groups)) => groups.iter().sum(),
            (CoreRequest::All, None) => device_len,
        }
    }

    /// Checks the request against a device of `device_len` cores named `device`.
    pub fn check(&self, device: &str, device_len: usize) -> Result<(), RequestError> {
        let too_big = |asked: String| RequestError::PastDevice {
            origin: self.origin.clone(),
            asked,
            device: device.to_owned(),
            device_len,
        };
        match &self.cores {
            CoreRequest::Visible(set) if set.last() >= device_len => {
                return Err(too_big(format!("nc{}", set.last())));
            }
            CoreRequest::Num(n) | CoreRequest::AnyOf(n) if *n > device_len => {
                return Err(too_big(format!("{n} cores")));
            }
            _ => {}
        }
        if let Some(groups) = &self.groups {
            let sum: usize = groups.iter().sum();
            let available = match &self.cores {
                CoreRequest::Visible(set) => set.len(),
                _ => device_len,
            };
            if sum > available {
                return Err(RequestError::GroupsDontFit { origin: self.origin.clone(), sum, available });
            }
        }
        Ok(())
    }
}

/// One raw value and where it came from: an environment variable or a flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// `CORRAL_NUM_CORES` or `--num-cores`.
    pub name: String,
    pub value: String,
}

impl Source {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Source {
        Source { name: name.into(), value: value.into() }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.starts_with('-') {
            write!(f, "{} {}", self.name, self.value)
        } else {
            write!(f, "{}={}", self.name, self.value)
        }
    }
}

/// Raw request values before parsing, layered from the environment and explicit arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    pub visible: Option<Source>,
    pub num: Option<Source>,
    pub groups: Option<Source>,
    /// Values that a higher-precedence one replaced (a Neuron alias under its corral name,
    /// the environment under an explicit argument): never used, but still parsed, so that a
    /// typo never hides.
    pub shadowed: Vec<Source>,
}

impl Sources {
    /// Reads the environment through `lookup` (so tests need not touch the real one).
    /// A corral name overrides its Neuron alias.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Sources {
        let mut shadowed = Vec::new();
        let mut pick = |corral: &str, neuron: &str| {
            let corral_value = lookup(corral).map(|v| Source::new(corral, v));
            let neuron_value = lookup(neuron).map(|v| Source::new(neuron, v));
            match (corral_value, neuron_value) {
                (Some(corral_value), Some(neuron_value)) => {
                    shadowed.push(neuron_value);
                    Some(corral_value)
                }
                (corral_value, neuron_value) => corral_value.or(neuron_value),
            }
        };
        Sources {
            visible: pick(VISIBLE_CORES, VISIBLE_CORES_NEURON),
            num: pick(NUM_CORES, NUM_CORES_NEURON),
            groups: pick(GROUP_SIZES, GROUP_SIZES_NEURON),
            shadowed,
        }
    }

    /// Layers explicit values over these: an explicit core request (visible or num) replaces
    /// both core requests below it; explicit groups replace groups.
    pub fn overlay(self, explicit: Sources) -> Sources {
        let explicit_cores = explicit.visible.is_some() || explicit.num.is_some();
        let mut shadowed = self.shadowed;
        shadowed.extend(explicit.shadowed);
        if explicit_cores {
            shadowed.extend(self.visible.clone());
            shadowed.extend(self.num.clone());
        }
        if explicit.groups.is_some() {
            shadowed.extend(self.groups.clone());
        }
        Sources {
            visible: if explicit_cores { explicit.visible } else { self.visible },
            num: if explicit_cores { explicit.num } else { self.num },
            groups: explicit.groups.or(self.groups),
            shadowed,
        }
    }

    /// Parses every value present, then applies precedence and the group rules.
    pub fn resolve(&self) -> Result<Request, RequestError> {
        for source in &self.shadowed {
            let reason = if is_visible(&source.name) {
                parse_core_list(&source.value).err()
            } else if is_groups(&source.name) {
                parse_group_sizes(&source.value).err()
            } else {
                parse_count(&source.value).err()
            };
            if let Some(reason) = reason {
                return Err(malformed(source, reason));
            }
        }
        let visible =
            self.visible.as_ref().map(|s| parse_core_list(&s.value).map_err(|r| malformed(s, r))).transpose()?;
        let num = self.num.as_ref().map(|s| parse_count(&s.value).map_err(|r| malformed(s, r))).transpose()?;
        let groups =
            self.groups.as_ref().map(|s| parse_group_sizes(&s.value).map_err(|r| malformed(s, r))).transpose()?;

        let (cores, mut origin) = match (visible, num, &self.visible, &self.num) {
            (Some(set), _, Some(source), _) => (CoreRequest::Visible(set), source.to_string()),
            (None, Some(n), _, Some(source)) => (CoreRequest::Num(n), source.to_string()),
            _ => (CoreRequest::All, String::new()),
        };
        if let (Some(groups_source), CoreRequest::Num(_)) = (&self.groups, &cores) {
            let num_source = self.num.as_ref().expect("a Num request comes from a num source");
            return Err(RequestError::GroupsWithNum { groups: groups_source.to_string(), num: num_source.to_string() });
        }
        if let Some(groups_source) = &self.groups {
            origin = if origin.is_empty() { groups_source.to_string() } else { format!("{origin} {groups_source}") };
        }
        if origin.is_empty() {
            origin = Request::all().origin;
        }
        Ok(Request { cores, groups, origin })
    }
}

fn malformed(source: &Source, reason: String) -> RequestError {
    RequestError::Malformed { setting: source.to_string(), reason, hint: hint_for(&source.name) }
}

fn is_visible(name: &str) -> bool {
    name.contains("VISIBLE") || name.contains("visible")
}

fn is_groups(name: &str) -> bool {
    name.contains("GROUP") || name.contains("group")
}

fn hint_for(name: &str) -> &'static str {
    if is_visible(name) {
        "write global core indices and ranges: `4`, `4-5`, `0,1,2`, `0-2,3` or `1,3`"
    } else if is_groups(name) {
        "write group sizes of at least 1 core, separated by commas: `2,4,3,4`"
    } else {
        "write a whole number of cores, at least 1: `2`"
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("{setting} is not valid: {reason}\nhint: {hint}")]
    Malformed { setting: String, reason: String, hint: &'static str },
    #[error(
        "{groups} cannot be combined with {num}\nhint: unset one of them; groups take sum(sizes) consecutive cores by themselves"
    )]
    GroupsWithNum { groups: String, num: String },
    #[error("{origin} asks for {asked}, but {device} has {device_len} cores (nc0-nc{last})", last = device_len.saturating_sub(1))]
    PastDevice { origin: String, asked: String, device: String, device_len: usize },
    #[error("{origin}: the groups need {sum} cores but only {available} are available to them")]
    GroupsDontFit { origin: String, sum: usize, available: usize },
}

/// Parses a core count of at least 1.
pub fn parse_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("0 cores: a process needs at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) if text.trim().is_empty() => Err("the value is empty".to_owned()),
        Err(_) => Err(format!("`{}` is not a whole number", text.trim())),
    }
}

/// Parses legacy group sizes `2,4,3,4`.
pub fn parse_group_sizes(text: &str) -> Result<Vec<usize>, String> {
    if text.trim().is_empty() {
        return Err("the value is empty".to_owned());
    }
    let sizes = text
        .split(',')
        .map(|part| match part.trim().parse::<usize>() {
            Ok(0) => Err("a group of 0 cores".to_owned()),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("`{}` is not a group size", part.trim())),
        })
        .collect::<Result<Vec<usize>, String>>()?;
    // Checked once here, so every later sum of the sizes is known not to overflow.
    sizes.iter().try_fold(0usize, |sum, &n| sum.checked_add(n)).ok_or("the sizes add up past any machine's cores")?;
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    /// Resolves `env` (`NAME=value` lines) over an 8-core device, rendering the request or error.
    #[track_caller]
    fn check(env: &str, expect: Expect) {
        check_with(env, Sources::default(), expect)
    }

    #[track_caller]
    fn check_with(env: &str, explicit: Sources, expect: Expect) {
        let vars: Vec<(&str, &str)> =
            env.split_whitespace().map(|kv| kv.split_once('=').expect("NAME=value")).collect();
        let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        let result =
            Sources::from_env(lookup).overlay(explicit).resolve().and_then(|r| r.check("sim:8", 8).map(|()| r));
        let actual = match result {
            Ok(Request { cores: CoreRequest::Visible(set), groups, origin }) => {
                format!("Visible({set}) groups={groups:?} origin={origin}")
            }
            Ok(Request { cores, groups, origin }) => format!("{cores:?} groups={groups:?} origin={origin}"),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn defaults_and_precedence() {
        check("", expect![[r#"All groups=None origin=default (every core)"#]]);
        check("CORRAL_NUM_CORES=2", expect![[r#"Num(2) groups=None origin=CORRAL_NUM_CORES=2"#]]);
        check("NEURON_RT_NUM_CORES=3", expect![[r#"Num(3) groups=None origin=NEURON_RT_NUM_CORES=3"#]]);
        check("NEURON_RT_NUM_CORES=3 CORRAL_NUM_CORES=2", expect![[r#"Num(2) groups=None origin=CORRAL_NUM_CORES=2"#]]);
        check(
            "CORRAL_VISIBLE_CORES=4-5 CORRAL_NUM_CORES=2",
            expect!["Visible(nc4-nc5) groups=None origin=CORRAL_VISIBLE_CORES=4-5"],
        );
        check(
            "NEURON_RT_VISIBLE_CORES=6 CORRAL_VISIBLE_CORES=4-5",
            expect!["Visible(nc4-nc5) groups=None origin=CORRAL_VISIBLE_CORES=4-5"],
        );
        check(
            "NEURON_RT_VISIBLE_CORES=6 CORRAL_NUM_CORES=1",
            expect!["Visible(nc6) groups=None origin=NEURON_RT_VISIBLE_CORES=6"],
        );
    }

    #[test]
    fn explicit_arguments_override_the_environment() {
        let num = Sources { num: Some(Source::new("--num-cores", "3")), ..Sources::default() };
        check_with("CORRAL_VISIBLE_CORES=4-5", num, expect![[r#"Num(3) groups=None origin=--num-cores 3"#]]);
        let visible = Sources { visible: Some(Source::new("--visible-cores", "0-1")), ..Sources::default() };
        check_with(
            "CORRAL_NUM_CORES=4 CORRAL_GROUP_SIZES=1,1",
            visible,
            expect!["Visible(nc0-nc1) groups=Some([1, 1]) origin=--visible-cores 0-1 CORRAL_GROUP_SIZES=1,1"],
        );
    }

    #[test]
    fn visible_core_syntax() {
        check("CORRAL_VISIBLE_CORES=4", expect!["Visible(nc4) groups=None origin=CORRAL_VISIBLE_CORES=4"]);
        check("CORRAL_VISIBLE_CORES=0,1,2", expect!["Visible(nc0-nc2) groups=None origin=CORRAL_VISIBLE_CORES=0,1,2"]);
        check("CORRAL_VISIBLE_CORES=0-2,3", expect!["Visible(nc0-nc3) groups=None origin=CORRAL_VISIBLE_CORES=0-2,3"]);
        check("CORRAL_VISIBLE_CORES=3,0-2", expect!["Visible(nc0-nc3) groups=None origin=CORRAL_VISIBLE_CORES=3,0-2"]);
        check(
            "CORRAL_VISIBLE_CORES=4-2",
            expect![[r#"
                error: CORRAL_VISIBLE_CORES=4-2 is not valid: range 4-2 runs backwards
                hint: write global core indices and ranges: `4`, `4-5`, `0,1,2`, `0-2,3` or `1,3`"#]],
        );
        check(
            "NEURON_RT_VISIBLE_CORES=x",
            expect![[r#"
                error: NEURON_RT_VISIBLE_CORES=x is not valid: `x` is not a core index
                hint: write global core indices and ranges: `4`, `4-5`, `0,1,2`, `0-2,3` or `1,3`"#]],
        );
        check(
            "NEURON_RT_VISIBLE_CORES=3,1",
            expect!["Visible(nc1,nc3) groups=None origin=NEURON_RT_VISIBLE_CORES=3,1"],
        );
        check("CORRAL_VISIBLE_CORES=0,2", expect!["Visible(nc0,nc2) groups=None origin=CORRAL_VISIBLE_CORES=0,2"]);
        check(
            "CORRAL_VISIBLE_CORES=0-2,2",
            expect![[r#"
                error: CORRAL_VISIBLE_CORES=0-2,2 is not valid: core 2 is listed twice
                hint: write global core indices and ranges: `4`, `4-5`, `0,1,2`, `0-2,3` or `1,3`"#]],
        );
        check(
            "CORRAL_VISIBLE_CORES=",
            expect![[r#"
                error: CORRAL_VISIBLE_CORES= is not valid: the value is empty
                hint: write global core indices and ranges: `4`, `4-5`, `0,1,2`, `0-2,3` or `1,3`"#]],
        );
        check(
            "CORRAL_VISIBLE_CORES=1-",
            expect![[r#"
                error: CORRAL_VISIBLE_CORES=1- is not valid: `` is not a core index
                hint: write global core indices and ranges: `4`, `4-5`, `0,1,2`, `0-2,3` or `1,3`"#]],
        );
        // Regression: ranges were expanded before the device-size check, so this value made
        // the process allocate tens of GB and abort.
        check(
            "CORRAL_VISIBLE_CORES=0-4000000000",
            expect![[
                r#"error: CORRAL_VISIBLE_CORES=0-4000000000 asks for nc4000000000, but sim:8 has 8 cores (nc0-nc7)"#
            ]],
        );
        check(
            "CORRAL_VISIBLE_CORES=0-18446744073709551615",
            expect![[r#"
                error: CORRAL_VISIBLE_CORES=0-18446744073709551615 is not valid: core 18446744073709551615 is past any device
                hint: write global core indices and ranges: `4`, `4-5`, `0,1,2`, `0-2,3` or `1,3`"#]],
        );
        check(
            "CORRAL_VISIBLE_CORES=7-8",
            expect![[r#"error: CORRAL_VISIBLE_CORES=7-8 asks for nc8, but sim:8 has 8 cores (nc0-nc7)"#]],
        );
    }

    #[test]
    fn core_counts() {
        check(
            "CORRAL_NUM_CORES=0",
            expect![[r#"
            error: CORRAL_NUM_CORES=0 is not valid: 0 cores: a process needs at least 1
            hint: write a whole number of cores, at least 1: `2`"#]],
        );
        check(
            "NEURON_RT_NUM_CORES=two",
            expect![[r#"
            error: NEURON_RT_NUM_CORES=two is not valid: `two` is not a whole number
            hint: write a whole number of cores, at least 1: `2`"#]],
        );
        check(
            "CORRAL_NUM_CORES=-1",
            expect![[r#"
            error: CORRAL_NUM_CORES=-1 is not valid: `-1` is not a whole number
            hint: write a whole number of cores, at least 1: `2`"#]],
        );
        check(
            "CORRAL_NUM_CORES=9",
            expect![[r#"error: CORRAL_NUM_CORES=9 asks for 9 cores, but sim:8 has 8 cores (nc0-nc7)"#]],
        );
        // A malformed value fails even where a higher-precedence value would win: another
        // setting, the corral name over its Neuron alias, or an explicit argument.
        check(
            "CORRAL_NUM_CORES=2 NEURON_RT_NUM_CORES=two",
            expect![[r#"
                error: NEURON_RT_NUM_CORES=two is not valid: `two` is not a whole number
                hint: write a whole number of cores, at least 1: `2`"#]],
        );
        check_with(
            "NEURON_RT_VISIBLE_CORES=4-2",
            Sources { num: Some(Source::new("--num-cores", "1")), ..Sources::default() },
            expect![[r#"
                error: NEURON_RT_VISIBLE_CORES=4-2 is not valid: range 4-2 runs backwards
                hint: write global core indices and ranges: `4`, `4-5`, `0,1,2`, `0-2,3` or `1,3`"#]],
        );
        check(
            "CORRAL_VISIBLE_CORES=1 CORRAL_NUM_CORES=x",
            expect![[r#"
            error: CORRAL_NUM_CORES=x is not valid: `x` is not a whole number
            hint: write a whole number of cores, at least 1: `2`"#]],
        );
    }

    #[test]
    fn group_sizes() {
        check(
            "NEURONCORE_GROUP_SIZES=2,4,1",
            expect![[r#"All groups=Some([2, 4, 1]) origin=NEURONCORE_GROUP_SIZES=2,4,1"#]],
        );
        check(
            "CORRAL_GROUP_SIZES=2,0",
            expect![[r#"
            error: CORRAL_GROUP_SIZES=2,0 is not valid: a group of 0 cores
            hint: write group sizes of at least 1 core, separated by commas: `2,4,3,4`"#]],
        );
        check(
            "CORRAL_GROUP_SIZES=2,,1",
            expect![[r#"
            error: CORRAL_GROUP_SIZES=2,,1 is not valid: `` is not a group size
            hint: write group sizes of at least 1 core, separated by commas: `2,4,3,4`"#]],
        );
        check(
            "NEURONCORE_GROUP_SIZES=18446744073709551615,1",
            expect![[r#"
            error: NEURONCORE_GROUP_SIZES=18446744073709551615,1 is not valid: the sizes add up past any machine's cores
            hint: write group sizes of at least 1 core, separated by commas: `2,4,3,4`"#]],
        );
        check(
            "CORRAL_GROUP_SIZES=2,2 CORRAL_NUM_CORES=4",
            expect![[r#"
            error: CORRAL_GROUP_SIZES=2,2 cannot be combined with CORRAL_NUM_CORES=4
            hint: unset one of them; groups take sum(sizes) consecutive cores by themselves"#]],
        );
        check(
            "CORRAL_GROUP_SIZES=1,2 CORRAL_VISIBLE_CORES=4-6",
            expect!["Visible(nc4-nc6) groups=Some([1, 2]) origin=CORRAL_VISIBLE_CORES=4-6 CORRAL_GROUP_SIZES=1,2"],
        );
        check(
            "CORRAL_GROUP_SIZES=2,2 CORRAL_VISIBLE_CORES=4-6",
            expect![[
                r#"error: CORRAL_VISIBLE_CORES=4-6 CORRAL_GROUP_SIZES=2,2: the groups need 4 cores but only 3 are available to them"#
            ]],
        );
        check(
            "CORRAL_GROUP_SIZES=4,5",
            expect![[r#"error: CORRAL_GROUP_SIZES=4,5: the groups need 9 cores but only 8 are available to them"#]],
        );
    }

    #[test]
    fn ranges_display() {
        assert_eq!(CoreRange::new(4, 2).to_string(), "nc4-nc5");
        assert_eq!(CoreRange::new(3, 1).to_string(), "nc3");
        assert_eq!(CoreRange::new(4, 2).to_env_value(), "4-5");
    }
}
