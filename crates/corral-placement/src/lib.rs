//! Placement: which process cores each instance of a model occupies (SPEC §5).
//!
//! Pure: `(layout of what is loaded, model, where to load) -> placement`. No IO, no threads;
//! it fails only on requests that cannot be met. The runtime keeps one [`Layout`] per
//! process, asks [`Layout::place`] before loading anything, and [`Layout::commit`]s once the
//! engine has loaded the instances.
//!
//! Indices here are process-relative: core 0 is the first core the process owns.
//!
//! | start | count | instances |
//! |---|---|---|
//! | - | - | one, on the K consecutive cores with the fewest instances (lowest index on ties) |
//! | s | - | one, on s..s+K-1 |
//! | s | c ≥ K | floor(c/K), on s.., s+K.., … |
//! | - | c ≥ K | floor(c/K), from the least-used start aligned to K |
//! | multicore | | floor(n/K) over all n cores |
//! | group g | | one, on the first K cores of legacy group g |

use std::fmt;

/// A run of consecutive process cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoreSpan {
    pub first: usize,
    /// At least 1.
    pub count: usize,
}

impl CoreSpan {
    pub fn new(first: usize, count: usize) -> CoreSpan {
        CoreSpan { first, count }
    }

    pub fn end(&self) -> usize {
        self.first + self.count
    }

    pub fn contains(&self, core: usize) -> bool {
        (self.first..self.end()).contains(&core)
    }

    pub fn cores(&self) -> std::ops::Range<usize> {
        self.first..self.end()
    }

    pub fn overlaps(&self, other: &CoreSpan) -> bool {
        self.first < other.end() && other.first < self.end()
    }
}

/// `nc3` or `nc0-nc1`.
impl fmt::Display for CoreSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.count {
            1 => write!(f, "nc{}", self.first),
            _ => write!(f, "nc{}-nc{}", self.first, self.end() - 1),
        }
    }
}

/// Where to load a model, as Neuron's placement APIs say it, or instance by instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Where {
    /// `(start_nc, nc_count)`; `None` is Neuron's `-1`.
    Cores { start: Option<usize>, count: Option<usize> },
    /// Default: one instance on the least-used cores.
    #[default]
    Auto,
    /// `multicore_context()`: floor(n/K) instances over all process cores.
    Multicore,
    /// A legacy group index (`NEURONCORE_GROUP_SIZES`).
    Group(usize),
    /// One instance at each of these start cores (what `corral plan --optimize` writes: a
    /// model's instances need not be adjacent); they must not overlap.
    Starts(Vec<usize>),
}

impl Where {
    /// From Neuron's `(start_nc, nc_count)` integers, where `-1` means "not given".
    pub fn from_neuron(start_nc: i64, nc_count: i64) -> Result<Where, PlacementError> {
        let start = match start_nc {
            -1 => None,
            s if s >= 0 => Some(s as usize),
            s => return Err(PlacementError::BadArgument(format!("start_nc {s} is not valid: use -1 or a core index"))),
        };
        let count = match nc_count {
            -1 => None,
            0 => {
                return Err(PlacementError::BadArgument(
                    "nc_count 0 is not valid: use -1 for one instance, or a count of at least the model's cores"
                        .to_owned(),
                ));
            }
            c if c > 0 => Some(c as usize),
            c => {
                return Err(PlacementError::BadArgument(format!(
                    "nc_count {c} is not valid: use -1 or a positive count"
                )));
            }
        };
        Ok(match (start, count) {
            (None, None) => Where::Auto,
            (start, count) => Where::Cores { start, count },
        })
    }
}

impl fmt::Display for Where {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: Option<usize>| v.map_or("-1".to_owned(), |v| v.to_string());
        match self {
            Where::Auto => f.write_str("least-used cores"),
            Where::Cores { start, count } => write!(f, "start_nc={} nc_count={}", show(*start), show(*count)),
            Where::Multicore => f.write_str("multicore"),
            Where::Group(g) => write!(f, "group {g}"),
            Where::Starts(starts) => {
                let starts: Vec<String> = starts.iter().map(usize::to_string).collect();
                write!(f, "starts {}", starts.join(","))
            }
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    #[error("{0}")]
    BadArgument(String),
    #[error("a model needs at least 1 core per instance")]
    NoCores,
    #[error("model needs {k} cores per instance, process has {cores} ({span})", span = CoreSpan::new(0, *cores))]
    ModelTooBig { k: usize, cores: usize },
    #[error("nc_count {count} is below the model's {k} cores per instance")]
    CountBelowModel { count: usize, k: usize },
    #[error("nc_count {count} is above the process's {cores} cores")]
    CountAboveProcess { count: usize, cores: usize },
    #[error("start nc{start} is outside the process cores {span}", span = CoreSpan::new(0, *cores))]
    StartOutside { start: usize, cores: usize },
    #[error("nc{core} left this process's cpuset; place the model on the cores it still has")]
    Gone { core: usize },
    #[error("model needs {needed} cores from nc{start}, process has {span}", span = CoreSpan::new(0, *cores))]
    NotEnoughFromStart { needed: usize, start: usize, cores: usize },
    #[error("group {group} does not exist; the process has {count} groups\nhint: groups come from CORRAL_GROUP_SIZES (NEURONCORE_GROUP_SIZES)", count = .groups.len())]
    NoSuchGroup { group: usize, groups: Vec<CoreSpan> },
    #[error("model needs {k} cores but group {group} has {size} ({span})")]
    GroupTooSmall { k: usize, group: usize, size: usize, span: CoreSpan },
    #[error("starts is empty: name at least one start core")]
    NoStarts,
    #[error("instances at nc{first} and nc{second} overlap: the model needs {k} cores per instance")]
    StartsOverlap { first: usize, second: usize, k: usize },
}

/// One placed instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub model: String,
    pub replica: usize,
    pub cores: CoreSpan,
}

/// What [`Layout::place`] proposes for one load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub model: String,
    pub instances: Vec<CoreSpan>,
    /// Cores this load shares with other loaded models, and those models.
    pub shared: Vec<(usize, Vec<String>)>,
}

impl Placement {
    /// The one warning a load that shares cores deserves, naming cores and models.
    pub fn warning(&self) -> Option<String> {
        if self.shared.is_empty() {
            return None;
        }
        let mut others: Vec<&str> = self.shared.iter().flat_map(|(_, m)| m.iter().map(String::as_str)).collect();
        others.sort_unstable();
        others.dedup();
        let cores: Vec<String> = self.shared.iter().map(|(c, _)| format!("nc{c}")).collect();
        Some(format!(
            "{} shares {} with {}: executions there take turns and each change of model is a switch",
            self.model,
            cores.join(", "),
            others.join(", ")
        ))
    }
}

/// What is loaded on a process's cores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    cores: usize,
    groups: Vec<CoreSpan>,
    placed: Vec<Placed>,
    /// Cores that left the process's cpuset: nothing new is placed on them.
    gone: Vec<usize>,
}

impl Layout {
    /// A process with `cores` cores and optional legacy group sizes (cut from core 0).
    pub fn new(cores: usize, group_sizes: &[usize]) -> Layout {
        let mut first = 0;
        let groups = group_sizes
            .iter()
            .map(|&size| {
                let group = CoreSpan::new(first, size);
                first += size;
                group
            })
            .collect();
        Layout { cores, groups, placed: Vec::new(), gone: Vec::new() }
    }

    /// Marks `core` as gone from the process's cpuset (or quota): placements avoid it from
    /// now on, and one that names it fails, until [`Layout::set_back`].
    pub fn set_gone(&mut self, core: usize) {
        if !self.gone.contains(&core) {
            self.gone.push(core);
        }
    }

    /// Marks a gone `core` as the process's again.
    pub fn set_back(&mut self, core: usize) {
        self.gone.retain(|&c| c != core);
    }

    /// A core joined the process: it gets the next number, which this returns.
    pub fn add_core(&mut self) -> usize {
        self.cores += 1;
        self.cores - 1
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    pub fn groups(&self) -> &[CoreSpan] {
        &self.groups
    }

    pub fn placed(&self) -> &[Placed] {
        &self.placed
    }

    /// Instances per core.
    pub fn usage(&self) -> Vec<usize> {
        let mut usage = vec![0; self.cores];
        for placed in &self.placed {
            placed.cores.cores().for_each(|c| usage[c] += 1);
        }
        usage
    }

    /// Proposes where `model` (K = `k` cores per instance) goes; changes nothing.
    pub fn place(&self, model: &str, k: usize, at: &Where) -> Result<Placement, PlacementError> {
        let n = self.cores;
        if k == 0 {
            return Err(PlacementError::NoCores);
        }
        if k > n {
            return Err(PlacementError::ModelTooBig { k, cores: n });
        }
        let usage = self.usage();
        let gone = |span: CoreSpan| span.cores().find(|c| self.gone.contains(c));
        // A span over a gone core is chosen only when every span is.
        let cost = |span: CoreSpan| -> (bool, usize) { (gone(span).is_some(), span.cores().map(|c| usage[c]).sum()) };
        let run = |start: usize, count: usize| (0..count).map(|i| CoreSpan::new(start + i * k, k)).collect::<Vec<_>>();
        let instances = match at {
            Where::Auto => {
                let best = (0..=n - k).min_by_key(|&s| (cost(CoreSpan::new(s, k)), s)).expect("k <= n leaves a start");
                run(best, 1)
            }
            Where::Multicore if self.gone.is_empty() => run(0, n / k),
            Where::Multicore => {
                let kept: Vec<CoreSpan> =
                    (0..n / k).map(|i| CoreSpan::new(i * k, k)).filter(|span| gone(*span).is_none()).collect();
                if kept.is_empty() { run(0, 1) } else { kept }
            }
            Where::Starts(starts) => {
                let mut sorted = starts.clone();
                sorted.sort_unstable();
                if sorted.is_empty() {
                    return Err(PlacementError::NoStarts);
                }
                for &start in &sorted {
                    if start >= n {
                        return Err(PlacementError::StartOutside { start, cores: n });
                    }
                    if start + k > n {
                        return Err(PlacementError::NotEnoughFromStart { needed: k, start, cores: n });
                    }
                }
                if let Some(pair) = sorted.windows(2).find(|pair| pair[1] < pair[0] + k) {
                    return Err(PlacementError::StartsOverlap { first: pair[0], second: pair[1], k });
                }
                starts.iter().map(|&s| CoreSpan::new(s, k)).collect()
            }
            Where::Group(group) => {
                let group = *group;
                let span = *self
                    .groups
                    .get(group)
                    .ok_or_else(|| PlacementError::NoSuchGroup { group, groups: self.groups.clone() })?;
                if span.count < k {
                    return Err(PlacementError::GroupTooSmall { k, group, size: span.count, span });
                }
                run(span.first, 1)
            }
            &Where::Cores { start, count } => {
                if let Some(count) = count {
                    if count < k {
                        return Err(PlacementError::CountBelowModel { count, k });
                    }
                    if count > n {
                        return Err(PlacementError::CountAboveProcess { count, cores: n });
                    }
                }
                let replicas = count.map_or(1, |c| c / k);
                match start {
                    Some(start) => {
                        if start >= n {
                            return Err(PlacementError::StartOutside { start, cores: n });
                        }
                        if start + replicas * k > n {
                            return Err(PlacementError::NotEnoughFromStart { needed: replicas * k, start, cores: n });
                        }
                        run(start, replicas)
                    }
                    None => {
                        let span = replicas * k;
                        let best = (0..=n - span)
                            .step_by(k)
                            .min_by_key(|&s| (cost(CoreSpan::new(s, span)), s))
                            .expect("count <= n leaves start 0");
                        run(best, replicas)
                    }
                }
            }
        };
        let chosen_freely = matches!(at, Where::Auto | Where::Multicore | Where::Cores { start: None, .. });
        if !chosen_freely && let Some(core) = instances.iter().find_map(|span| gone(*span)) {
            return Err(PlacementError::Gone { core });
        }
        let mut shared: Vec<(usize, Vec<String>)> = Vec::new();
        for core in instances.iter().flat_map(CoreSpan::cores) {
            let mut others: Vec<String> = self
                .placed
                .iter()
                .filter(|p| p.model != model && p.cores.contains(core))
                .map(|p| p.model.clone())
                .collect();
            others.dedup();
            if !others.is_empty() {
                shared.push((core, others));
            }
        }
        Ok(Placement { model: model.to_owned(), instances, shared })
    }

    /// Records a placement as loaded.
    pub fn commit(&mut self, placement: &Placement) {
        for (replica, &cores) in placement.instances.iter().enumerate() {
            self.placed.push(Placed { model: placement.model.clone(), replica, cores });
        }
    }

    /// Forgets every instance of `model`.
    pub fn remove(&mut self, model: &str) {
        self.placed.retain(|p| p.model != model);
    }

    /// The core map: cores in a row, each instance a bar over its cores, shared cores marked.
    pub fn render(&self) -> String {
        const CELL: usize = 5;
        let labels: Vec<String> = self.placed.iter().map(|p| format!("{}[{}]", p.model, p.replica)).collect();
        let label_width = labels.iter().map(String::len).chain(["shared".len(), "core".len()]).max().unwrap_or(6) + 2;
        let mut out = format!("{:label_width$}", "core");
        for core in 0..self.cores {
            out += &format!("{:<CELL$}", format!("nc{core}"));
        }
        out = out.trim_end().to_owned() + "\n";
        let mut order: Vec<usize> = (0..self.placed.len()).collect();
        order.sort_by_key(|&i| (self.placed[i].cores.first, i));
        for i in order {
            let span = self.placed[i].cores;
            let width = span.count * CELL - 1;
            let bar = format!("[{}]", "=".repeat(width - 2));
            out += &format!("{:label_width$}{}{}\n", labels[i], " ".repeat(span.first * CELL), bar);
        }
        let models_on = |core: usize| {
            let mut models: Vec<&str> =
                self.placed.iter().filter(|p| p.cores.contains(core)).map(|p| p.model.as_str()).collect();
            models.dedup();
            models.len()
        };
        let marks: String =
            (0..self.cores).map(|c| format!("{:<CELL$}", if models_on(c) > 1 { " ^^" } else { "" })).collect();
        if marks.trim().is_empty() {
            return out;
        }
        out + &format!("{:label_width$}{}\n", "shared", marks.trim_end())
    }

    /// The core map as SVG, for `plan --svg`, reports and the dashboard: cores in a row, one
    /// bar per instance below them. A shared core says so in words and in shape, not in hue
    /// alone (its cell is hatched and labelled "shared", the bars on it dashed and red).
    pub fn svg(&self) -> String {
        use fmt::Write;
        const CELL: usize = 48;
        const ROW: usize = 28;
        let escape =
            |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
        let mut models_on = vec![Vec::<&str>::new(); self.cores];
        for p in &self.placed {
            for c in p.cores.cores() {
                if !models_on[c].contains(&p.model.as_str()) {
                    models_on[c].push(&p.model);
                }
            }
        }
        let label = 120;
        let width = label + self.cores * CELL + 10;
        let height = (self.placed.len() + 2) * ROW + 10;
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"12\">\n\
             <defs><pattern id=\"shared\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\"><path d=\"M0,6 L6,0\" stroke=\"#a33\"/></pattern></defs>\n"
        );
        for (c, models) in models_on.iter().enumerate() {
            let x = label + c * CELL;
            let (fill, words) = if models.len() > 1 { ("url(#shared)", " shared") } else { ("#eeeeee", "") };
            let _ = writeln!(
                out,
                "<rect x=\"{x}\" y=\"5\" width=\"{}\" height=\"{ROW}\" fill=\"{fill}\" stroke=\"#888\"><title>nc{c}{words}</title></rect>",
                CELL - 4
            );
            let _ = writeln!(out, "<text x=\"{}\" y=\"23\">nc{c}</text>", x + 6);
        }
        let mut order: Vec<usize> = (0..self.placed.len()).collect();
        order.sort_by_key(|&i| (self.placed[i].cores.first, i));
        for (row, i) in order.into_iter().enumerate() {
            let p = &self.placed[i];
            let y = 10 + (row + 1) * ROW;
            let x = label + p.cores.first * CELL;
            let shared = p.cores.cores().any(|c| models_on[c].len() > 1);
            let (fill, dash, words) = if shared {
                ("#d9534f", " stroke=\"#000\" stroke-dasharray=\"4 3\"", " (shares a core)")
            } else {
                ("#5b8def", "", "")
            };
            let _ = writeln!(out, "<text x=\"4\" y=\"{}\">{}[{}]{words}</text>", y + 17, escape(&p.model), p.replica);
            let _ = writeln!(
                out,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" rx=\"4\" fill=\"{fill}\"{dash}/>",
                p.cores.count * CELL - 4,
                ROW - 6
            );
        }
        out + "</svg>\n"
    }
}
