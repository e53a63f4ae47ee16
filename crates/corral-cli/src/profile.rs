//! `corral plan --profile`: each ONNX or Python model of a repository measured on K cores of
//! the real device (one instance, warmed up first), its execution times written to
//! `<model>/profile.json` for `--predict` and `--optimize`: executions back to back, and
//! executions that start on a core that waited for its call, which run slower (caches and
//! clocks gone cold; a fifth slower for squeezenet here), so a prediction of a core that is
//! sometimes idle does not underestimate its queueing. Where the process's cores give every
//! model K of its own, the models are measured side by side, each on its own cores, as they
//! will serve; otherwise one at a time, each at core 0. Simulated models declare their
//! latency and are skipped.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, bail};
use corral_engine::ModelSource;
use corral_plan::{
    arrivals::{self, Rng},
    profile::{self, Profile},
};
use corral_runtime::{Where, repository, repository::ModelFolder};

use crate::cli::PlanArgs;

/// Calls run before measuring, so caches and lazy allocations are warm.
const WARMUP: u32 = 10;
/// Executions per block of each kind (see [`measure`]).
const BLOCK: usize = 20;

pub fn run(args: &PlanArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    let (folders, bad) = repository::read_folders(args.models.path())?;
    let ensembles = repository::read_ensembles(args.models.path());
    for error in bad.iter().filter(|e| !crate::planning::of_ensemble(e, &ensembles)) {
        eprintln!("warning: skipping a model: {error}");
    }
    // ONNX models, and Python models (each instance its stub, measured as it serves).
    let onnx: Vec<_> =
        folders.iter().filter(|f| matches!(f.def.source, ModelSource::Onnx(_) | ModelSource::Python(_))).collect();
    if onnx.is_empty() {
        bail!(
            "{} holds no ONNX or Python model to profile (simulated models declare their latency; ensembles are timed by their steps)",
            args.models.path().display()
        );
    }
    for folder in &onnx {
        if folder.dir.file_name().is_none_or(|n| *n != *folder.def.name) {
            bail!(
                "`{}` is a lone model file: give --profile a repository folder to write profile.json into",
                folder.def.name
            );
        }
    }
    let runtime = crate::models::runtime(&args.device, Some(&args.cores), false, lookup)?;
    let device = runtime.device().to_string();
    // Side by side when every model has cores of its own, as they serve; else one by one.
    let together = onnx.iter().map(|f| f.def.cores_per_instance).sum::<usize>() <= runtime.cores();
    let rounds: Vec<Vec<&ModelFolder>> =
        if together { vec![onnx.clone()] } else { onnx.iter().map(|f| vec![*f]).collect() };
    for round in rounds {
        // First each model on its engine (chosen by timing under `auto`), then, for those
        // whose engine `auto` chose between two, on the other one, so both are recorded.
        let first = profile_round(&runtime, &round, |_| args.engine.clone(), args.samples)?;
        let others: Vec<Option<String>> = first.iter().map(|(engine, _)| other_engine(engine)).collect();
        let again: Vec<(&ModelFolder, String)> =
            round.iter().zip(&others).filter_map(|(f, other)| Some((*f, other.clone()?))).collect();
        let folders: Vec<&ModelFolder> = again.iter().map(|(f, _)| *f).collect();
        let measured = profile_round(&runtime, &folders, |i| Some(again[i].1.clone()), args.samples)?;
        let mut second: BTreeMap<&str, (Vec<f64>, Vec<f64>)> =
            folders.iter().zip(measured).map(|(f, (_, samples))| (f.def.name.as_str(), samples)).collect();
        for (i, (folder, (engine, (samples_ms, after_idle_ms)))) in round.iter().zip(first).enumerate() {
            let k = folder.def.cores_per_instance;
            let mut engines = BTreeMap::new();
            if let (Some(other), Some((samples, idle))) = (&others[i], second.remove(folder.def.name.as_str())) {
                let of = |samples_ms: &Vec<f64>, after_idle_ms: &Vec<f64>| profile::Samples {
                    samples_ms: samples_ms.clone(),
                    after_idle_ms: after_idle_ms.clone(),
                };
                engines.insert(engine.engine.clone(), of(&samples_ms, &after_idle_ms));
                engines.insert(other.clone(), of(&samples, &idle));
            }
            let profile = Profile {
                device: device.clone(),
                cores_per_instance: k,
                samples_ms,
                after_idle_ms,
                engine: Some(engine.engine.clone()),
                engines,
            };
            let path = folder.dir.join(profile::FILE);
            std::fs::write(&path, profile.to_json() + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
            let (median, idle) = profile.medians();
            let others: Vec<String> = profile
                .engines
                .iter()
                .filter(|(name, _)| Some(*name) != profile.engine.as_ref())
                .map(|(name, samples)| {
                    format!(" ({name}: {:.3} ms)", corral_plan::report::percentile(&samples.samples_ms, 0.5))
                })
                .collect();
            println!(
                "{}: 2 x {} executions on {k} cores of {device}{}, {}: median {median:.3} ms back to back, {idle:.3} ms after idle{} -> {}",
                folder.def.name,
                args.samples,
                if together && round.len() > 1 { " beside the others" } else { "" },
                engine.engine,
                others.concat(),
                path.display()
            );
        }
    }
    Ok(())
}

/// The engine `auto` did not choose, where it timed both.
fn other_engine(engine: &corral_cores::ModelEngine) -> Option<String> {
    if engine.medians_us.len() < 2 {
        return None;
    }
    engine.medians_us.keys().find(|name| **name != engine.engine).cloned()
}

/// Loads the round's models side by side (model `i` on `engine(i)`, `None` leaving it to
/// the configuration), measures each, and unloads them: each one's engine and its
/// (back-to-back, after-idle) samples.
#[allow(clippy::type_complexity)]
fn profile_round(
    runtime: &corral_runtime::Runtime,
    round: &[&ModelFolder],
    engine: impl Fn(usize) -> Option<String>,
    samples: u32,
) -> anyhow::Result<Vec<(corral_cores::ModelEngine, (Vec<f64>, Vec<f64>))>> {
    let mut start = 0;
    let mut models = Vec::new();
    for (i, folder) in round.iter().enumerate() {
        let k = folder.def.cores_per_instance;
        let def = folder.def.clone().at(Where::Cores { start: Some(start), count: Some(k) });
        let def = crate::models::with_engine(def, engine(i).as_deref());
        start += k;
        let model = runtime.load(def).with_context(|| format!("cannot load `{}` to profile it", folder.def.name))?;
        models.push(model);
    }
    let measured: Vec<anyhow::Result<(Vec<f64>, Vec<f64>)>> = std::thread::scope(|scope| {
        let threads: Vec<_> =
            models.iter().zip(0..).map(|(model, i)| scope.spawn(move || measure(model, samples, i))).collect();
        threads.into_iter().map(|t| t.join().expect("a profiling thread panicked")).collect()
    });
    let mut out = Vec::new();
    for (model, samples) in models.iter().zip(measured) {
        let samples = samples.with_context(|| format!("`{}` fails on sample inputs", model.name()))?;
        out.push((model.engine(), samples));
    }
    drop(models);
    for folder in round {
        runtime.unload(&folder.def.name)?;
    }
    Ok(out)
}

/// Warms `model` up, then times `samples` executions of it back to back (closed loop, one
/// call at a time) and `samples` more that each start after a pause, in alternating blocks of
/// [`BLOCK`], so a machine whose speed drifts drifts under both alike. The first block of
/// each kind sets the pauses: Poisson arrivals at half of what the back-to-back times allow
/// (seed 0, stream `stream`), the pauses of a core serving at half its capacity.
fn measure(model: &corral_runtime::Model, samples: u32, stream: u64) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let inputs = corral_engine::sample_inputs(model.inputs(), 1);
    for _ in 0..WARMUP {
        model.infer(inputs.clone())?;
    }
    let time = || -> anyhow::Result<f64> { Ok(model.infer(inputs.clone())?.compute.as_secs_f64()) };
    let mut rng = Rng::new(0, stream);
    let (mut back_to_back, mut after_idle) = (Vec::new(), Vec::new());
    let mut rate = 0.0;
    while back_to_back.len() < samples as usize {
        let block = BLOCK.min(samples as usize - back_to_back.len());
        for _ in 0..block {
            back_to_back.push(time()?);
        }
        if rate == 0.0 {
            rate = 0.5 * back_to_back.len() as f64 / back_to_back.iter().sum::<f64>();
        }
        for _ in 0..block {
            std::thread::sleep(Duration::from_secs_f64(arrivals::gap(&mut rng, rate, 1.0)));
            after_idle.push(time()?);
        }
    }
    let ms = |mut s: Vec<f64>| {
        s.iter_mut().for_each(|s| *s *= 1e3);
        s.sort_by(f64::total_cmp);
        s
    };
    Ok((ms(back_to_back), ms(after_idle)))
}
