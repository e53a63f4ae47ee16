//! `corral demo`, the README's main job: real models placed on this machine's cores and
//! benchmarked, then the FlexEG layouts of the seeds on a simulated inf1.6xlarge, good and
//! bad, to show what sharing a core costs.

use std::time::Duration;

use anyhow::Context;
use corral_engine::{DataType, SimModel, TensorSpec};
use corral_runtime::{ModelDef, Runtime, RuntimeSettings, Where};

use crate::{
    bench::{Limit, drive, tables},
    cli::{DemoArgs, DeviceArg},
};

pub fn run(args: &DemoArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    let limit = Limit::Duration(Duration::from_secs_f64(args.seconds.max(0.1)));
    real_models(limit, lookup)?;
    flexeg(limit)?;
    Ok(())
}

fn heading(text: &str) {
    println!("\n== {text}\n");
}

fn real_models(limit: Limit, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    let site = corral_engine_ort::project_site_packages()
        .context("the demo's models come from .venv\nhint: run ./scripts/setup first")?;
    let device = DeviceArg { device: Some("cpu".parse().expect("a valid device")) };
    let runtime = crate::models::runtime(&device, None, false, lookup)?;
    let n = runtime.cores();
    heading(&format!("real models on this machine's {n} cores ({})", runtime.global_cores()));
    let squeezenet = site.join("onnx/backend/test/data/light/light_squeezenet.onnx");
    let magika = site.join("magika/models/standard_v3_3/model.onnx");
    let models = vec![
        runtime.load(ModelDef::onnx("squeezenet", squeezenet).at(Where::Multicore))?,
        runtime.load(ModelDef::onnx("magika", magika).at(Where::Cores { start: Some(n - 1), count: None }))?,
    ];
    // A shared core is also announced on stderr, by the runtime's one warning per load.
    print!("{}", runtime.layout().render());
    println!("\nsqueezenet: one replica per core; magika shares the last core with it.");
    for model in &models {
        let engine = model.engine();
        let why = engine.reason.unwrap_or_else(|| "named, or the only engine found".to_owned());
        println!("{}: on {}: {why}", model.name(), engine.engine);
    }
    println!();
    print!("{}", tables(&drive(&runtime, &models, 2 * n, limit)));
    Ok(())
}

fn flexeg(limit: Limit) -> anyhow::Result<()> {
    for (title, c_start) in
        [("good layout: A@0 B@2 C@6 D@9, nothing shared", 6), ("bad layout: C@5 shares nc5 with B", 5)]
    {
        let lock_dir = tempfile_dir()?;
        let mut settings = RuntimeSettings::default();
        settings.take.device = Some("sim:inf1.6xlarge".parse().expect("a valid device"));
        settings.take.lock_dir = Some(lock_dir.clone());
        let runtime = Runtime::new(settings)?;
        heading(&format!("FlexEG on sim:inf1.6xlarge, {title}"));
        let model = |latency_ms| SimModel {
            inputs: vec![TensorSpec::new("x", DataType::F32, vec![1, 16])],
            outputs: vec![TensorSpec::new("y", DataType::F32, vec![1, 4])],
            latency: Duration::from_millis(latency_ms),
            switch: Duration::from_millis(5),
        };
        let mut models = Vec::new();
        for (name, k, start) in [("A", 2, 0), ("B", 4, 2), ("C", 3, c_start), ("D", 4, 9)] {
            let def = ModelDef::sim(name, model(10)).cores(k).at(Where::Cores { start: Some(start), count: None });
            models.push(runtime.load(def)?);
        }
        print!("{}", runtime.layout().render());
        println!();
        print!("{}", tables(&drive(&runtime, &models, 8, limit)));
        drop(models);
        drop(runtime);
        let _ = std::fs::remove_dir_all(lock_dir);
    }
    Ok(())
}

/// A private registry for the simulated machine, so the demo never collides with a real one.
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("corral-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
