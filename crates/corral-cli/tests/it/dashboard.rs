//! The live page of `corral serve` (`/dashboard` on the metrics port) in a real Chromium driven
//! through Selenium and Debian's chromedriver (`dashboard.py` says what it checks), and its
//! switch: `--dashboard off` answers 404 with the way back.

use std::{path::Path, process::Command};

use super::{
    Host, cannot_run,
    serve::{Server, http, put_sim, python},
};

/// Whether Debian's Chromium and its chromedriver are here; without them the test fails
/// naming them, unless `CORRAL_TEST_SKIP` lists `browser` (for hosts without a display stack;
/// CI never sets it).
pub(super) fn have_browser() -> bool {
    let missing: Vec<&str> =
        ["/usr/bin/chromium", "/usr/bin/chromedriver"].into_iter().filter(|p| !Path::new(p).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    cannot_run(
        "browser",
        format!(
            "{} not installed: ./scripts/setup --tests installs Debian's chromium and chromium-driver",
            missing.join(" and ")
        ),
    );
    false
}

#[test]
fn the_live_page_shows_every_core_and_holder_follows_a_move_and_survives_a_restart_in_chromium() {
    if !have_browser() {
        return;
    }
    let host = Host::new();
    let repo = tempfile::tempdir().expect("dir");
    put_sim(repo.path(), "one", 10);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/dashboard.py");
    let mut command = Command::new("timeout");
    command
        .args(["300", python(".venv-clients").to_str().expect("utf-8")])
        .arg(script)
        .args([env!("CARGO_BIN_EXE_corral"), host.dir.path().to_str().expect("utf-8")])
        .arg(repo.path());
    // The README's screenshot: `CORRAL_DASHBOARD_SCREENSHOT=docs/dashboard.png` writes it.
    if let Some(path) = std::env::var_os("CORRAL_DASHBOARD_SCREENSHOT") {
        command.arg(path);
    }
    let output = command.output().expect("python runs (./scripts/setup --tests makes .venv-clients)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("dashboard checks passed"),
        "{}\nhint: ./scripts/setup --tests installs chromium, chromium-driver and selenium",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn dashboard_off_answers_404_and_says_how_to_turn_it_on() {
    let host = Host::new();
    let repo = tempfile::tempdir().expect("dir");
    put_sim(repo.path(), "one", 1);
    let server = Server::start(&host, repo.path(), &["--device", "sim:2", "--dashboard", "off"]);
    server.wait_ready();
    for path in ["/dashboard", "/dashboard/first.js", "/dashboard/events"] {
        let (status, body) = http(&server.metrics, "GET", path, b"");
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("--dashboard on"), "{body}");
    }
    let (status, page) = http(&server.metrics, "GET", "/metrics", b"");
    assert_eq!(status, 200);
    assert!(page.contains("corral_dashboard_pages 0"), "{page}");
}
