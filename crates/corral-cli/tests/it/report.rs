//! `--report FILE.html` of `corral plan --predict` (the FlexEG example, the autopilot on, a
//! sweep of load points) and of `corral bench` on the real `cpu` device: `report_check.py`
//! checks each file against the run's own `--json` and renders it in Chromium. A path that
//! cannot be written fails before anything runs.

use std::{path::Path, process::Command};

use super::{
    Host,
    dashboard::have_browser,
    planning::flexeg,
    serve::{put_sim, python},
};

/// Runs `corral ARGS --report DIR/NAME.html --json`, then the checker on both.
fn report_of(host: &Host, args: &[&str], name: &str, screenshot: Option<std::ffi::OsString>) {
    let dir = tempfile::tempdir().expect("dir");
    let html = dir.path().join(format!("{name}.html"));
    let output = host.run(
        &[args, &["--report", html.to_str().expect("utf-8"), "--json"]].concat(),
        &[("CORRAL_AUTOPILOT_INTERVAL", "0.2")],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = dir.path().join("stdout.json");
    std::fs::write(&stdout, &output.stdout).expect("write");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/report_check.py");
    let mut check = Command::new("timeout");
    check.args(["120", python(".venv-clients").to_str().expect("utf-8")]).arg(script).arg(&html).arg(&stdout);
    if let Some(path) = screenshot {
        check.arg(path);
    }
    let checked = check.output().expect("python runs (./scripts/setup --tests makes .venv-clients)");
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success() && said.contains("report checks passed"),
        "{said}\n{}\nhint: ./scripts/setup --tests installs chromium, chromium-driver and selenium",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn a_predicted_sweep_and_a_measured_one_become_reports_that_match_their_json_in_chromium() {
    if !have_browser() {
        return;
    }
    let host = Host::new();
    let repo = flexeg();
    let path = repo.path().to_str().expect("utf-8");
    // The README's picture: `CORRAL_REPORT_SCREENSHOT=docs/plan-report.png` writes it.
    let plan = ["plan", "--predict", "--model-repository", path, "--device", "sim:inf1.6xlarge"];
    let load = ["--rate", "A=200,B=60,C=60,D=40", "--duration", "20", "--sweep", "4", "--autopilot"];
    report_of(&host, &[&plan[..], &load].concat(), "plan", std::env::var_os("CORRAL_REPORT_SCREENSHOT"));

    // Measured on this machine's cores: two simulated models (their time is a sleep), the
    // autopilot on, open-loop load at two points.
    let repo = tempfile::tempdir().expect("dir");
    for (model, latency) in [("fast", 2), ("slow", 8)] {
        put_sim(repo.path(), model, latency);
    }
    let path = repo.path().to_str().expect("utf-8");
    let bench = ["bench", "--model-repository", path, "--device", "cpu", "--autopilot"];
    report_of(
        &host,
        &[&bench[..], &["--rate", "fast=300,slow=150", "--duration", "1", "--sweep", "2"]].concat(),
        "bench",
        None,
    );
}

#[test]
fn a_report_that_cannot_be_written_fails_before_the_run() {
    let host = Host::new();
    let repo = flexeg();
    let path = repo.path().to_str().expect("utf-8");
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("no/such/folder/r.html");
    let missing = missing.to_str().expect("utf-8");
    let bench = ["bench", "--model-repository", path, "--device", "sim:inf1.6xlarge", "--duration", "30"];
    let plan = ["plan", "--predict", "--model-repository", path, "--device", "sim:inf1.6xlarge", "--rate", "A=1"];
    for (args, says) in [
        (&[&bench[..], &["--report", missing]].concat(), "cannot write the report to"),
        (&[&plan[..], &["--report", missing]].concat(), "cannot write the report to"),
        (&[&bench[..], &["--report", "r.txt"]].concat(), "--report r.txt must name an .html file"),
        (&[&bench[..], &["--sweep", "0"]].concat(), "--sweep 0: give the number of load points"),
        (
            &["plan", "--model-repository", path, "--device", "sim:inf1.6xlarge", "--report", "r.html"].to_vec(),
            "--report and --sweep draw a predicted run: give --predict",
        ),
    ] {
        let output = host.run(args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        // A run prints its tables or JSON: nothing on stdout is nothing run.
        assert!(output.stdout.is_empty(), "nothing ran: {args:?}");
    }
    assert!(!Path::new(missing).exists());
}
