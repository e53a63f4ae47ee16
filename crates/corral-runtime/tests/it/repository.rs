//! `config.toml` repositories: good models load, bad ones are reported with their file and
//! reason while the others still load.

use std::fs;

use corral_runtime::{Where, repository};
use expect_test::expect;

fn write(dir: &std::path::Path, path: &str, text: &str) {
    let path = dir.join(path);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

#[test]
fn reads_models_and_reports_bad_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let repo = dir.path();
    write(
        repo,
        "a/config.toml",
        "platform = \"sim\"\ncores = 2\n[placement]\nstart = 1\ncount = 4\n[sim]\nlatency_ms = 10\nswitch_ms = 2.5\n[[input]]\nname = \"x\"\ndatatype = \"FP32\"\nshape = [1, 3]\n[[output]]\nname = \"y\"\ndatatype = \"INT64\"\nshape = [1]\n",
    );
    write(repo, "b/config.toml", "platform = \"onnx\"\n[placement]\ncount = \"all\"\n");
    write(repo, "b/1/model.onnx", "not really onnx, but the repository only finds files");
    write(repo, "b/3/model.onnx", "newest");
    write(
        repo,
        "c/config.toml",
        "platform = \"sim\"\n[sim]\nlatency_ms = 1\n[[output]]\nname = \"y\"\ndatatype = \"FP32\"\n",
    );
    write(repo, "d/config.toml", "cores = 0\n");
    write(repo, "e/config.toml", "platform = \"tensorflow\"\n");
    write(repo, "f/config.toml", "[placement]\ngroup = 1\nstart = 2\n");
    write(repo, "g/config.toml", "platfrom = \"sim\"\n");
    write(repo, "h/config.toml", "platform = \"onnx\"\n");
    fs::create_dir_all(repo.join("not-a-model")).expect("mkdir");
    let (models, errors) = repository::read(repo).expect("readable");
    let mut out = String::new();
    for model in &models {
        out += &format!(
            "{} K={} at={:?} source={:?}\n",
            model.name,
            model.cores_per_instance,
            model.placement.map(|w| w.to_string()),
            model.source
        )
        .replace(&repo.display().to_string(), "REPO");
    }
    for error in &errors {
        out += &format!("error: {error}\n").replace(&repo.display().to_string(), "REPO");
    }
    expect![[r#"
        a K=2 at=Some("start_nc=1 nc_count=4") source=Sim(SimModel { inputs: [TensorSpec { name: "x", datatype: F32, shape: [1, 3] }], outputs: [TensorSpec { name: "y", datatype: I64, shape: [1] }], latency: 10ms, switch: 2.5ms })
        b K=1 at=Some("multicore") source=Onnx("REPO/b/3/model.onnx")
        error: REPO/c/config.toml: every [[input]] and [[output]] of a sim model needs a fixed shape
        error: REPO/d/config.toml: cores = 0: a model needs at least 1 core per instance
        error: REPO/e/config.toml: platform `tensorflow` is not supported; use "onnx" or "sim"
        error: REPO/f/config.toml: placement group cannot be combined with start or count
        error: REPO/g/config.toml: unknown field `platfrom`, expected one of `platform`, `cores`, `placement`, `sim`, `input`, `output`
        error: REPO/h: no <version>/model.onnx found (e.g. 1/model.onnx)
    "#]]
    .assert_eq(&out);
    assert_eq!(models[1].placement, Some(Where::Multicore));
}

#[test]
fn a_single_onnx_file_is_a_repository() {
    let dir = tempfile::tempdir().expect("dir");
    write(dir.path(), "squeeze.onnx", "bytes");
    let (models, errors) = repository::read(&dir.path().join("squeeze.onnx")).expect("readable");
    assert!(errors.is_empty());
    assert_eq!(models[0].name, "squeeze");
    assert!(repository::read(&dir.path().join("missing")).is_err());
}
