//! `corral plan --profile`: each ONNX model of a repository measured on K cores of the real
//! device (one instance at core 0 of the cores this process takes, warmed up first), its
//! execution times written to `<model>/profile.json` for `--predict` and `--optimize`.
//! Simulated models declare their latency and are skipped.

use anyhow::{Context, bail};
use corral_engine::ModelSource;
use corral_plan::profile::{self, Profile};
use corral_runtime::{Where, repository};

use crate::cli::PlanArgs;

/// Calls run before measuring, so caches and lazy allocations are warm.
const WARMUP: u32 = 10;

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
    let runtime = crate::models::runtime(&args.device, Some(&args.cores), false, lookup)?;
    let device = runtime.device().to_string();
    for folder in onnx {
        if folder.dir.file_name().is_none_or(|n| *n != *folder.def.name) {
            bail!(
                "`{}` is a lone model file: give --profile a repository folder to write profile.json into",
                folder.def.name
            );
        }
        let k = folder.def.cores_per_instance;
        let def = folder.def.clone().at(Where::Cores { start: Some(0), count: Some(k) });
        let model = runtime.load(def).with_context(|| format!("cannot load `{}` to profile it", folder.def.name))?;
        let inputs = corral_engine::sample_inputs(model.inputs(), 1);
        for _ in 0..WARMUP {
            model.infer(inputs.clone()).with_context(|| format!("`{}` fails on sample inputs", folder.def.name))?;
        }
        let mut samples_ms = Vec::with_capacity(args.samples as usize);
        for _ in 0..args.samples {
            let inference = model.infer(inputs.clone())?;
            samples_ms.push(inference.compute.as_secs_f64() * 1e3);
        }
        samples_ms.sort_by(f64::total_cmp);
        runtime.unload(&folder.def.name)?;
        let profile = Profile { device: device.clone(), cores_per_instance: k, samples_ms };
        let path = folder.dir.join(profile::FILE);
        std::fs::write(&path, profile.to_json() + "\n").with_context(|| format!("cannot write {}", path.display()))?;
        let median = profile.samples_ms[profile.samples_ms.len() / 2];
        println!(
            "{}: {} executions on {k} cores of {device}, median {median:.3} ms -> {}",
            folder.def.name,
            args.samples,
            path.display()
        );
    }
    Ok(())
}
