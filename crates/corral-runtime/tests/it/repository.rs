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
        let at = model.placement.as_ref().map(|w| w.to_string());
        out += &format!("{} K={} at={at:?}", model.name, model.cores_per_instance);
        if let Some(engine) = &model.engine {
            out += &format!(" engine={engine}");
        }
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
    write(repo, "i/config.toml", "engine = \"openvino\"\n");
    write(repo, "i/1/model.onnx", "bytes");
    write(repo, "j/config.toml", "engine = \"tensorrt\"\n");
    write(repo, "j/1/model.onnx", "bytes");
    write(repo, "k/config.toml", "platform = \"openvino\"\n");
    write(repo, "k/1/model.xml", "IR");
    write(repo, "l/config.toml", "platform = \"openvino\"\nengine = \"auto\"\n");
    write(repo, "l/1/model.xml", "IR");
    fs::create_dir_all(repo.join("not-a-model")).expect("mkdir");
    let (models, errors) = repository::read(repo).expect("readable");
    let out = show(repo, &models, &errors, true);
    expect![[r#"
        a K=2 at=Some("start_nc=1 nc_count=4") source=Sim(SimModel { inputs: [TensorSpec { name: "x", datatype: F32, shape: [1, 3] }], outputs: [TensorSpec { name: "y", datatype: I64, shape: [1] }], latency: 10ms, switch: 2.5ms })
        b K=1 at=Some("multicore") source=Onnx("REPO/b/3/model.onnx")
        i K=1 at=None engine=openvino source=Onnx("REPO/i/1/model.onnx")
        k K=1 at=None engine=openvino source=Onnx("REPO/k/1/model.xml")
        l K=1 at=None engine=openvino source=Onnx("REPO/l/1/model.xml")
        error: REPO/c/config.toml: every [[input]] and [[output]] of a sim model needs a fixed shape
        error: REPO/d/config.toml: cores = 0: a model needs at least 1 core per instance
        error: REPO/e/config.toml: platform `tensorflow` is not supported; use "onnx", "openvino", "python" or "sim"
        error: REPO/f/config.toml: placement group cannot be combined with start or count
        error: REPO/g/config.toml: unknown field `platfrom`, expected one of `platform`, `engine`, `cores`, `placement`, `sim`, `input`, `output`, `versions`, `plan`, `autopilot`, `python`
        error: REPO/h: no <version>/model.onnx found (e.g. 1/model.onnx)
        error: REPO/j/config.toml: engine = `tensorrt` is not an engine; use onnxruntime, openvino, tract, auto
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
    // A config.pbtxt that is there but cannot be read (here a link to itself) is an error, not
    // a folder without one.
    write(repo, "unreadable/1/model.onnx", "bytes");
    // Triton's OpenVINO backend reads IR (model.xml) unless default_model_filename says
    // otherwise; corral.engine picks the engine whatever the backend.
    write(repo, "vino/config.pbtxt", "backend: \"openvino\"");
    write(repo, "vino/1/model.xml", "IR");
    let engine = |e: &str| format!("parameters {{ key: \"corral.engine\" value {{ string_value: \"{e}\" }} }}");
    write(repo, "picked/config.pbtxt", &format!("platform: \"onnxruntime_onnx\"\n{}", engine("openvino")));
    write(repo, "picked/1/model.onnx", "bytes");
    write(repo, "unknown/config.pbtxt", &format!("platform: \"onnxruntime_onnx\"\n{}", engine("tensorrt")));
    write(repo, "unknown/1/model.onnx", "bytes");
    std::os::unix::fs::symlink("config.pbtxt", repo.join("unreadable/config.pbtxt")).expect("link");
    let (models, errors) = repository::read(repo).expect("readable");
    assert_eq!(
        models.iter().map(|m| (m.name.as_str(), m.elastic)).collect::<Vec<_>>(),
        [("picked", false), ("renamed", false), ("replicas", false), ("stretchy", true), ("vino", false)]
    );
    let out = show(repo, &models, &errors, false);
    expect![[r#"
        picked K=1 at=None engine=openvino
        renamed K=1 at=Some("multicore")
        replicas K=2 at=Some("start_nc=-1 nc_count=4")
        stretchy K=1 at=Some("start_nc=-1 nc_count=2")
        vino K=1 at=None engine=openvino
        error: failed to read text proto from REPO/broken/config.pbtxt: 2:21: Expected identifier, got: 
        error: REPO/sloppy/config.pbtxt: corral.elastic = `yes` is not valid; use "true" or "false"
        error: REPO/tf/config.pbtxt: platform `tensorflow_savedmodel` / backend `` is not served by corral; use platform "onnxruntime_onnx", or backend "onnxruntime", "openvino" or "python"
        error: REPO/unknown/config.pbtxt: corral.engine = `tensorrt` is not an engine; use onnxruntime, openvino, tract, auto
        error: failed to read text proto from REPO/unreadable/config.pbtxt: Too many levels of symbolic links (os error 40)
        error: REPO/zero/config.pbtxt: corral.cores = 0: a model needs at least 1 core per instance
    "#]].assert_eq(&out);
    let folder = repository::read_folder(&repo.join("replicas")).expect("readable").expect("a model");
    assert!(folder.pbtxt.is_some(), "the server reads its serving fields from the parsed file");
}

/// Triton's checks of a configuration run when a folder is read, in its words: the special
/// cases of Triton's `qa/L0_model_config` that depend on the folder (the ONNX file telling the
/// backend, a folder without versions), and one of its configuration checks.
#[test]
fn folders_are_checked_as_triton_checks_them() {
    let dir = tempfile::tempdir().expect("dir");
    let repo = dir.path();
    write(repo, "invalid_platform/1/model.onnx", "not read");
    write(
        repo,
        "invalid_platform/config.pbtxt",
        "platform: \"onnxruntim\"\ndefault_model_filename: \"model.onnx\"\nmax_batch_size: 8\n",
    );
    write(repo, "no_version/config.pbtxt", "name: \"no_version\"\nmax_batch_size: 1\n");
    write(repo, "negative/1/model.onnx", "not read");
    write(repo, "negative/config.pbtxt", "backend: \"onnxruntime\"\nmax_batch_size: -2\n");
    let (_, errors) = repository::read(repo).expect("readable");
    let shown: Vec<String> =
        errors.iter().map(|e| e.to_string().replace(&repo.display().to_string(), "REPO")).collect();
    expect![[r#"
        REPO/invalid_platform/config.pbtxt: unexpected 'platform' and 'backend' pair, got:onnxruntim, onnxruntime
        REPO/negative/config.pbtxt: 'max_batch_size' must be non-negative value for negative
        REPO/no_version/config.pbtxt: Invalid model name: Could not determine backend for model 'no_version' with no backend in model configuration. Expected model name of the form 'model.<backend_name>'."#]]
    .assert_eq(&shown.join("\n"));
}

/// The versions a folder with `1/`, `2/`, `3/` serves under `config` (a `config.toml` when it
/// starts with `[`, else a `config.pbtxt`), or the error.
#[track_caller]
fn check_versions(config: &str, expect: expect_test::Expect) {
    let dir = tempfile::tempdir().expect("dir");
    let folder = dir.path().join("m");
    for version in ["1", "2", "3"] {
        write(&folder, &format!("{version}/model.onnx"), version);
    }
    let file = if config.starts_with('[') { "config.toml" } else { "config.pbtxt" };
    write(&folder, file, config);
    let out = match repository::read_folder(&folder) {
        Ok(Some(read)) => {
            let versions: Vec<String> = read
                .versions
                .iter()
                .map(|v| {
                    let corral_engine::ModelSource::Onnx(path) = &v.def.source else { panic!("onnx") };
                    let file = fs::read_to_string(path).expect("model file");
                    format!("{}={file}", v.number)
                })
                .collect();
            let corral_engine::ModelSource::Onnx(highest) = &read.def.source else { panic!("onnx") };
            format!("{} (def {})", versions.join(" "), fs::read_to_string(highest).expect("file"))
        }
        Ok(None) => "no model".to_owned(),
        Err(error) => error.to_string().replace(&dir.path().display().to_string(), "DIR"),
    };
    expect.assert_eq(&out);
}

#[test]
fn version_policies_select_version_folders_as_triton_does() {
    // Each selected version is its own model file; the def is the highest (plan, bench, Python).
    check_versions("", expect!["3=3 (def 3)"]);
    check_versions("platform: \"onnxruntime_onnx\"", expect!["3=3 (def 3)"]);
    check_versions("version_policy: { latest: { num_versions: 2 } }", expect!["2=2 3=3 (def 3)"]);
    check_versions("version_policy: { all: {} }", expect!["1=1 2=2 3=3 (def 3)"]);
    check_versions("version_policy { specific { versions: [3, 1] } }", expect!["1=1 3=3 (def 3)"]);
    check_versions("version_policy: { latest: { num_versions: 9 } }", expect!["1=1 2=2 3=3 (def 3)"]);
    check_versions("[versions]\npolicy = \"all\"\n", expect!["1=1 2=2 3=3 (def 3)"]);
    check_versions("[versions]\nlatest = 2\n", expect!["2=2 3=3 (def 3)"]);
    check_versions("[versions]\npolicy = \"specific\"\nspecific = [2]\n", expect!["2=2 (def 2)"]);
    check_versions("[versions]\nspecific = [1, 2]\n", expect!["1=1 2=2 (def 2)"]);
    // Mistakes fail the load naming what is wrong.
    check_versions(
        "version_policy { specific { versions: [1, 4] } }",
        expect!["DIR/m/config.pbtxt: version 4 is specified for model 'm', but the version directory is not present"],
    );
    check_versions(
        "version_policy: { latest: { num_versions: 0 } }",
        expect![
            "DIR/m/config.pbtxt: version_policy latest num_versions = 0: at least one version must be available under the version policy; use 1 or more"
        ],
    );
    check_versions(
        "[versions]\nlatest = 0\n",
        expect![
            "DIR/m/config.toml: [versions] latest = 0: at least one version must be available under the version policy; use 1 or more"
        ],
    );
    check_versions(
        "[versions]\npolicy = \"newest\"\n",
        expect![[r#"DIR/m/config.toml: [versions] policy = "newest" is not valid; use "latest", "all" or "specific""#]],
    );
    check_versions(
        "[versions]\npolicy = \"all\"\nlatest = 2\n",
        expect![[
            r#"DIR/m/config.toml: [versions] policy = "all" cannot be combined with latest; give `latest = N` only with "latest" and `specific = [..]` only with "specific""#
        ]],
    );
    check_versions(
        "[versions]\nspecific = []\n",
        expect!["DIR/m/config.toml: [versions] specific is empty; name at least one version"],
    );
    check_versions(
        "[versions]\nlatest = 1.5\n",
        expect!["DIR/m/config.toml: invalid type: floating point `1.5`, expected i64"],
    );
    check_versions(
        "version_policy: { newest: {} }",
        expect![[
            r#"failed to read text proto from DIR/m/config.pbtxt: 1:25: Message type "inference.ModelVersionPolicy" has no field named "newest"."#
        ]],
    );
    check_versions(
        "version_policy: { specific: { versions: [-1] } }",
        expect!["DIR/m/config.pbtxt: version_policy specific versions -1 is not valid; use 0 or more"],
    );
}

#[test]
fn a_selected_version_without_its_model_file_fails_the_load_naming_it() {
    let dir = tempfile::tempdir().expect("dir");
    write(dir.path(), "m/1/model.onnx", "1");
    fs::create_dir_all(dir.path().join("m/2")).expect("mkdir");
    let error = repository::read_folder(&dir.path().join("m")).expect_err("version 2 has no file");
    assert!(error.to_string().ends_with("version 2 has no model.onnx (2/model.onnx is missing)"), "{error}");
}

#[test]
fn python_models_are_read_from_each_configuration_kind_with_their_execute_timeout() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    write(d, "bare/1/model.py", "");
    write(d, "pbtxt/1/model.py", "");
    write(
        d,
        "pbtxt/config.pbtxt",
        "backend: \"python\"\nparameters { key: \"corral.python.execute_timeout_s\" value: { string_value: \"0\" } }\n",
    );
    write(d, "toml/2/model.py", "");
    let toml = "platform = \"python\"\n[python]\nexecute_timeout_s = 2.5\n[[input]]\nname = \"x\"\ndatatype = \"BYTES\"\nshape = [1]\n[[output]]\nname = \"y\"\ndatatype = \"FP32\"\nshape = [-1]\n";
    write(d, "toml/config.toml", toml);
    write(d, "bad/1/model.py", "");
    write(d, "bad/config.toml", "platform = \"python\"\n[python]\nexecute_timeout_s = -1\n");
    let (models, errors) = repository::read(d).expect("a repository");
    let mut seen = String::new();
    for model in &models {
        let corral_engine::ModelSource::Python(python) = &model.source else { panic!("{model:?}") };
        seen += &format!(
            "{} v{} timeout={:?} file={} config={}\n",
            model.name,
            python.version,
            python.execute_timeout,
            python.model_py.strip_prefix(d).expect("inside").display(),
            python.config_json
        );
    }
    for error in &errors {
        seen += &format!("error: {error}\n");
    }
    expect![[r#"
        bare v1 timeout=Some(60s) file=bare/1/model.py config={"backend":"python","batch_input":[],"batch_output":[],"cc_model_filenames":{},"default_model_filename":"","input":[],"instance_group":[],"max_batch_size":0,"metric_tags":{},"model_warmup":[],"name":"bare","output":[],"parameters":{},"platform":"","runtime":""}
        pbtxt v1 timeout=None file=pbtxt/1/model.py config={"backend":"python","batch_input":[],"batch_output":[],"cc_model_filenames":{},"default_model_filename":"","input":[],"instance_group":[],"max_batch_size":0,"metric_tags":{},"model_warmup":[],"name":"pbtxt","output":[],"parameters":{"corral.python.execute_timeout_s":{"string_value":"0"}},"platform":"","runtime":""}
        toml v2 timeout=Some(2.5s) file=toml/2/model.py config={"backend":"python","input":[{"data_type":"TYPE_STRING","dims":[1],"name":"x"}],"name":"toml","output":[{"data_type":"TYPE_FP32","dims":[-1],"name":"y"}]}
        error: REPO/bad/config.toml: [python] execute_timeout_s = -1: give seconds from 0.001 to 86400 (0: no bound)
    "#]]
    .assert_eq(&seen.replace(&d.display().to_string(), "REPO"));
}
