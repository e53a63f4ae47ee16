//! The runtime through its public API on simulated devices: every seed example of SPEC §5.1
//! and §5.2, execution rules of §6, and the repository format.

mod autopilot;
mod execution;
mod fuzz;
mod replay;
mod repository;
mod seeds;
mod views;

use std::time::Duration;

use corral_engine::{DataType, SimModel, Tensor, TensorSpec};
use corral_runtime::{Runtime, RuntimeSettings};

/// A runtime on `device` in a private lock folder, with an optional core count and groups.
fn runtime(device: &str, num_cores: Option<&str>, groups: Option<&str>) -> (tempfile::TempDir, Runtime) {
    runtime_with(device, num_cores, groups, RuntimeSettings::default())
}

fn runtime_with(
    device: &str,
    num_cores: Option<&str>,
    groups: Option<&str>,
    mut settings: RuntimeSettings,
) -> (tempfile::TempDir, Runtime) {
    let dir = tempfile::tempdir().expect("temp dir");
    settings.take.device = Some(device.parse().expect("valid device"));
    settings.take.lock_dir = Some(dir.path().to_owned());
    settings.take.explicit.num = num_cores.map(|n| corral_cores::Source::new("CORRAL_NUM_CORES", n));
    settings.take.explicit.groups = groups.map(|g| corral_cores::Source::new("CORRAL_GROUP_SIZES", g));
    let runtime = Runtime::new(settings).expect("runtime starts");
    (dir, runtime)
}

/// A simulated model: input `x` FP32 [1, 4], output `y` FP32 [1, 2].
fn sim(latency_ms: u64, switch_ms: u64) -> SimModel {
    SimModel {
        inputs: vec![TensorSpec::new("x", DataType::F32, vec![1, 4])],
        outputs: vec![TensorSpec::new("y", DataType::F32, vec![1, 2])],
        latency: Duration::from_millis(latency_ms),
        switch: Duration::from_millis(switch_ms),
    }
}

fn input() -> Vec<Tensor> {
    vec![Tensor::zeros_like(&TensorSpec::new("x", DataType::F32, vec![1, 4]))]
}
