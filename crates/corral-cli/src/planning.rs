//! What `plan --optimize`, `plan --predict` and `bench --rate` share: the demand of each model
//! (`--rate`, else its config's `[plan] rate` / `corral.plan.rate`; an ensemble's rate goes to
//! its steps), its execution time (a `sim` model's declaration, else its `profile.json`), and
//! the layout as the simulator takes it (SPEC §12); a simulated run as a report (`predicted`,
//! `series`), for `plan --predict` and for `bench --rate --report`, which draws the
//! prediction beside what it measured.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use corral_engine::ModelSource;
use corral_placement::Layout;
use corral_plan::{
    profile::{self, Profile},
    simulate::{self, ModelSpec, Service, Spec},
};
use corral_runtime::{
    CoreSpan,
    repository::{Ensemble, ModelFolder, RepositoryError},
};

use crate::cli::LoadArgs;

/// `--rate` flags (`A=1,B=2`, repeatable) as a rate per model of `names`; a model not named
/// is `None`. An unknown model, a model named twice, or a rate that is not a number above 0
/// is an error naming it.
pub fn flag_rates(flags: &[String], names: &[String]) -> anyhow::Result<Vec<Option<f64>>> {
    let mut rates: BTreeMap<&str, f64> = BTreeMap::new();
    for item in flags.iter().flat_map(|f| f.split(',')).map(str::trim).filter(|i| !i.is_empty()) {
        let Some((name, rate)) = item.split_once('=') else {
            bail!(
                "--rate `{item}` is not MODEL=R\nhint: give calls per second per model, e.g. --rate {}=100",
                names.first().map_or("m", String::as_str)
            );
        };
        let (name, rate) = (name.trim(), rate.trim());
        if !names.iter().any(|n| n == name) {
            bail!("--rate names `{name}`, which is not a model here; the models are {}", names.join(", "));
        }
        let value: f64 = rate
            .parse()
            .map_err(|_| anyhow::anyhow!("--rate {name}={rate}: `{rate}` is not a number of calls per second"))?;
        if !(value > 0.0 && value.is_finite()) {
            bail!("--rate {name}={rate}: a rate must be more than 0 calls per second (leave a model out for none)");
        }
        if rates.insert(name, value).is_some() {
            bail!("--rate names `{name}` twice; give each model one rate");
        }
    }
    Ok(names.iter().map(|n| rates.get(n.as_str()).copied()).collect())
}

/// Each model's rate: the flag's, else its config's. `None` when neither gives any model a
/// rate. An ensemble's rate (`--rate ENSEMBLE=R`) is added to each of its steps, once per
/// step that calls it, through nested ensembles too: each call of the ensemble is a call of
/// each step.
pub fn rates(load: &LoadArgs, folders: &[ModelFolder], ensembles: &[Ensemble]) -> anyhow::Result<Option<Vec<f64>>> {
    let mut names: Vec<String> = folders.iter().map(|f| f.def.name.clone()).collect();
    names.extend(ensembles.iter().map(|e| e.name.clone()));
    let flags = flag_rates(&load.rate, &names)?;
    if load.rate.is_empty() && folders.iter().all(|f| f.plan_rate.is_none()) {
        return Ok(None);
    }
    let mut rates: Vec<f64> = folders
        .iter()
        .zip(&flags)
        .map(|(folder, flag)| if load.rate.is_empty() { folder.plan_rate.unwrap_or(0.0) } else { flag.unwrap_or(0.0) })
        .collect();
    for (ensemble, flag) in ensembles.iter().zip(&flags[folders.len()..]) {
        let Some(rate) = flag else { continue };
        // Each step as often as it occurs (a nested ensemble's steps through it); a cycle,
        // which a load refuses, stops at a depth no real pipeline reaches.
        let mut todo = vec![(ensemble.name.as_str(), 0usize)];
        while let Some((name, depth)) = todo.pop() {
            match ensembles.iter().find(|e| e.name == name) {
                Some(inner) if depth < 16 => todo.extend(inner.steps.iter().map(|step| (step.as_str(), depth + 1))),
                Some(_) => {}
                None => match folders.iter().position(|f| f.def.name == name) {
                    Some(i) => rates[i] += rate,
                    None => eprintln!(
                        "warning: ensemble `{}`: step `{name}` is not a model here; its calls are not counted",
                        ensemble.name
                    ),
                },
            }
        }
    }
    Ok(Some(rates))
}

/// Whether `error` is the runtime's refusal of an ensemble's folder (it runs under `corral
/// serve`, its steps planned as models).
pub fn of_ensemble(error: &RepositoryError, ensembles: &[Ensemble]) -> bool {
    matches!(error, RepositoryError::Model { path, .. } if ensembles.iter().any(|e| path.starts_with(&e.dir)))
}

/// A model's execution time: a simulated model's declared latency and switch cost, an ONNX or
/// Python model's `profile.json` (refused, naming `--profile`, when there is none).
pub fn service(folder: &ModelFolder) -> anyhow::Result<Service> {
    match &folder.def.source {
        ModelSource::Sim(model) => {
            Ok(Service::Fixed { latency: model.latency.as_secs_f64(), switch: model.switch.as_secs_f64() })
        }
        ModelSource::Onnx(_) | ModelSource::Python(_) => {
            let path = folder.dir.join(profile::FILE);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                    "`{}` is {} with no {}: its execution time is unknown\nhint: measure it first with `corral plan --profile` on the device it will run on",
                    folder.def.name,
                    if matches!(folder.def.source, ModelSource::Python(_)) {
                        "a Python model"
                    } else {
                        "an ONNX model"
                    },
                    path.display()
                ),
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            };
            let profile = Profile::parse(&text, &path.display().to_string())?;
            if profile.cores_per_instance != folder.def.cores_per_instance {
                bail!(
                    "{}: measured on {} cores per instance, but `{}` now has {}\nhint: measure it again with `corral plan --profile`",
                    path.display(),
                    profile.cores_per_instance,
                    folder.def.name,
                    folder.def.cores_per_instance
                );
            }
            Ok(Service::Measured { samples: profile.seconds(), after_idle: profile.after_idle_seconds(), switch: 0.0 })
        }
    }
}

/// The runtime's settings as the simulator takes them: `CORRAL_EXEC_TIMEOUT` (else 30 s), the
/// runtime's queue and run bounds, and the autopilot (`--autopilot`, else `CORRAL_AUTOPILOT`)
/// with its interval (`CORRAL_AUTOPILOT_INTERVAL`, else 0.5 s).
pub fn spec(
    cores: usize,
    models: Vec<ModelSpec>,
    autopilot: bool,
    lookup: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Spec> {
    let exec_timeout = corral_runtime::exec_timeout_from(lookup(corral_runtime::EXEC_TIMEOUT_ENV))?;
    let from_env = corral_runtime::autopilot_from(lookup(corral_runtime::AUTOPILOT_ENV))?;
    let interval = corral_runtime::autopilot_interval_from(lookup(corral_runtime::AUTOPILOT_INTERVAL_ENV))?;
    let defaults = corral_runtime::RuntimeSettings::default();
    Ok(Spec {
        cores,
        exec_timeout: exec_timeout.as_secs_f64(),
        queue_len_max: defaults.queue_len_max,
        run_max: defaults.run_max,
        models,
        autopilot: (autopilot || from_env).then_some(interval.as_secs_f64()),
    })
}

/// A model of `folder` placed at `instances`.
pub fn model_spec(folder: &ModelFolder, instances: Vec<CoreSpan>, elastic: bool) -> anyhow::Result<ModelSpec> {
    Ok(ModelSpec {
        name: folder.def.name.clone(),
        cores_per_instance: folder.def.cores_per_instance,
        instances,
        elastic,
        service: service(folder)?,
        bounds: folder.def.autopilot,
        grouped: matches!(folder.def.placement, Some(corral_runtime::Where::Group(_))),
    })
}

/// The arrival generator's settings: CV (default 1) and seed (default 0).
pub fn generator(load: &LoadArgs) -> (f64, u64) {
    (load.cv.unwrap_or(1.0), load.seed.unwrap_or(0))
}

/// A simulated run's series: each core's busy share from its executions, answers, moves.
pub fn series(spec: &simulate::Spec, run: &simulate::Run) -> crate::report::Series {
    let executions = run
        .calls
        .iter()
        .flatten()
        .filter_map(|c| Some((c.start?, c.end, c.cores?)))
        .flat_map(|(start, end, span)| span.cores().map(move |core| (core, start, end)));
    let busy = crate::report::busy_from_executions(spec.cores, executions);
    let calls = calls_of(run);
    let moves = run
        .move_times
        .iter()
        .map(|&(t_s, model, kind)| crate::report::MoveAt {
            t_s,
            model: spec.models[model].name.clone(),
            kind: kind.to_owned(),
        })
        .collect();
    crate::report::Series::new(&calls, busy, moves)
}

/// Each model's simulated calls as the report counts them.
fn calls_of(run: &simulate::Run) -> Vec<Vec<corral_plan::report::Call>> {
    let call = |c: &simulate::CallRecord| corral_plan::report::Call {
        arrival: c.arrival,
        start: c.start,
        end: c.end,
        ok: c.failure.is_none(),
    };
    run.calls.iter().map(|calls| calls.iter().map(call).collect()).collect()
}

/// A simulated run in `bench --json`'s shape, with the layout it ran.
pub fn predicted(
    spec: &simulate::Spec,
    run: &simulate::Run,
    duration: f64,
    layout: &Layout,
    elastic: &[bool],
) -> crate::report::Report {
    let calls = calls_of(run);
    let models = spec
        .models
        .iter()
        .zip(&calls)
        .map(|(m, calls)| corral_plan::report::model_row(&m.name, calls, duration))
        .collect();
    let mut on_core: Vec<Vec<String>> = vec![Vec::new(); spec.cores];
    for placed in layout.placed() {
        for core in placed.cores.cores() {
            if !on_core[core].contains(&placed.model) {
                on_core[core].push(placed.model.clone());
            }
        }
    }
    let window = duration.max(run.end);
    let cores = run
        .cores
        .iter()
        .enumerate()
        .map(|(index, c)| corral_plan::report::CoreRow {
            index,
            global: index,
            executions: c.executions,
            busy_fraction: c.busy / window,
            switches: c.switches,
            models: on_core[index].clone(),
        })
        .collect();
    let layout = spec
        .models
        .iter()
        .zip(elastic)
        .zip(run.instances.iter().zip(&run.moves))
        .map(|((m, &elastic), (end, moves))| crate::report::LayoutRow {
            name: m.name.clone(),
            cores_per_instance: m.cores_per_instance,
            starts: m.instances.iter().map(|s| s.first).collect(),
            elastic,
            autopilot: spec.autopilot.map(|_| crate::report::AutopilotRow {
                starts_at_end: end.iter().map(|s| s.first).collect(),
                grow: moves.0,
                shrink: moves.1,
                r#move: moves.2,
            }),
        })
        .collect();
    crate::report::Report { models, cores, elapsed_s: duration, threads: None, layout: Some(layout) }
}
