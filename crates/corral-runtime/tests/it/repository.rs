//! Model repositories (`config.toml` and Triton's `config.pbtxt`): good models load, bad ones
//! are reported with their file and reason while the others still load.

use std::fs;

use corral_runtime::{Where, repository};
use expect_test::expect;

fn write(dir: &std::path::Path, path: &str, text: &str) {
    let path = dir.join(path);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

/// One line per model (with its source when `sources`) and per error, `repo` shown as REPO.
fn show(
    repo: &std::path::Path,
    models: &[corral_runtime::ModelDef],
    errors: &[repository::RepositoryError],
    sources: bool,
) -> String {
    let mut out = String::new();
    for model in models {
        let at = model.placement.map(|w| w.to_string());
        out += &format!("{} K={} at={at:?}", model.name, model.cores_per_instance);
        if sources {
            out += &format!(" source={:?}", model.source);
        }
        out += "\n";
    }
    for error in errors {
        out += &format!("error: {error}\n");
    }
    out.replace(&repo.display().to_string(), "REPO")
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
    let out = show(repo, &models, &errors, true);
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

#[test]
fn config_pbtxt_folders_give_their_placement() {
    let dir = tempfile::tempdir().expect("dir");
    let repo = dir.path();
    let group = "instance_group [{ count: 2 kind: KIND_CPU }]";
    let cores = |k: &str| format!("parameters {{ key: \"corral.cores\" value {{ string_value: \"{k}\" }} }}");
    write(repo, "replicas/config.pbtxt", &format!("platform: \"onnxruntime_onnx\"\n{group}\n{}", cores("2")));
    write(repo, "replicas/1/model.onnx", "bytes");
    write(
        repo,
        "renamed/config.pbtxt",
        "backend: \"onnxruntime\"\ndefault_model_filename: \"net.onnx\"\nparameters { key: \"corral.count\" value { string_value: \"all\" } }",
    );
    write(repo, "renamed/2/net.onnx", "bytes");
    write(repo, "tf/config.pbtxt", "platform: \"tensorflow_savedmodel\"");
    write(repo, "broken/config.pbtxt", "name: \"broken\"\ninput [ { name: \"x\" ");
    write(repo, "zero/config.pbtxt", &cores("0"));
    write(repo, "zero/1/model.onnx", "bytes");
    let elastic =
        |v: &str| format!("{group}\nparameters {{ key: \"corral.elastic\" value {{ string_value: \"{v}\" }} }}");
    write(repo, "stretchy/config.pbtxt", &elastic("true"));
    write(repo, "stretchy/1/model.onnx", "bytes");
    write(repo, "sloppy/config.pbtxt", &elastic("yes"));
    write(repo, "sloppy/1/model.onnx", "bytes");
    let (models, errors) = repository::read(repo).expect("readable");
    assert_eq!(
        models.iter().map(|m| (m.name.as_str(), m.elastic)).collect::<Vec<_>>(),
        [("renamed", false), ("replicas", false), ("stretchy", true)]
    );
    let out = show(repo, &models, &errors, false);
    expect![[r#"
        renamed K=1 at=Some("multicore")
        replicas K=2 at=Some("start_nc=-1 nc_count=4")
        stretchy K=1 at=Some("start_nc=-1 nc_count=2")
        error: REPO/broken/config.pbtxt: line 2, column 21: missing `}`
        error: REPO/sloppy/config.pbtxt: corral.elastic = `yes` is not valid; use "true" or "false"
        error: REPO/tf/config.pbtxt: platform `tensorflow_savedmodel` / backend `` is not served by corral; use platform "onnxruntime_onnx" or backend "onnxruntime"
        error: REPO/zero/config.pbtxt: corral.cores = 0: a model needs at least 1 core per instance
    "#]].assert_eq(&out);
    let folder = repository::read_folder(&repo.join("replicas")).expect("readable").expect("a model");
    assert!(folder.pbtxt.is_some(), "the server reads its serving fields from the parsed file");
}
