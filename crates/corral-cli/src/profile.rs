//! `corral plan --profile`: each ONNX model of a repository measured on K cores of the real
//! device (one instance, warmed up first), its execution times written to
//! `<model>/profile.json` for `--predict` and `--optimize`: executions back to back, and
//! executions that start on a core that waited for its call, which run slower (caches and
//! clocks gone cold; a fifth slower for squeezenet here), so a prediction of a core that is
//! sometimes idle does not underestimate its queueing. Where the process's cores give every
//! model K of its own, the models are measured side by side, each on its own cores, as they
//! will serve; otherwise one at a time, each at core 0. Simulated models declare their
//! latency and are skipped.

use std::time::Duration;

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
    for error in &bad {
        eprintln!("warning: skipping a model: {error}");
    }
    let onnx: Vec<_> = folders.iter().filter(|f| matches!(f.def.source, ModelSource::Onnx(_))).collect();
    if onnx.is_empty() {
        bail!(
            "{} holds no ONNX model to profile (simulated models declare their latency)",
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
        let mut start = 0;
        let mut models = Vec::new();
        for folder in &round {
            let k = folder.def.cores_per_instance;
            let def = folder.def.clone().at(Where::Cores { start: Some(start), count: Some(k) });
            let def = crate::models::with_engine(def, args.engine.as_deref());
            start += k;
            let model =
                runtime.load(def).with_context(|| format!("cannot load `{}` to profile it", folder.def.name))?;
            models.push(model);
        }
        let measured: Vec<anyhow::Result<(Vec<f64>, Vec<f64>)>> = std::thread::scope(|scope| {
            let threads: Vec<_> =
                models.iter().zip(0..).map(|(model, i)| scope.spawn(move || measure(model, args.samples, i))).collect();
            threads.into_iter().map(|t| t.join().expect("a profiling thread panicked")).collect()
        });
        for ((folder, model), samples_ms) in round.iter().zip(&models).zip(measured) {
            let (samples_ms, after_idle_ms) =
                samples_ms.with_context(|| format!("`{}` fails on sample inputs", model.name()))?;
            let k = folder.def.cores_per_instance;
            let profile = Profile { device: device.clone(), cores_per_instance: k, samples_ms, after_idle_ms };
            let path = folder.dir.join(profile::FILE);
            std::fs::write(&path, profile.to_json() + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
            let (median, idle) = profile.medians();
            println!(
                "{}: 2 x {} executions on {k} cores of {device}{}, median {median:.3} ms back to back, {idle:.3} ms after idle -> {}",
                folder.def.name,
                args.samples,
                if together && round.len() > 1 { " beside the others" } else { "" },
                path.display()
            );
        }
        for folder in &round {
            runtime.unload(&folder.def.name)?;
        }
    }
    Ok(())
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
