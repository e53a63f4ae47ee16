//! deploy/prometheus's rules and deploy/grafana's dashboard: Debian's `promtool` checks the
//! rules and runs their unit tests, and a real Prometheus (`/usr/bin/prometheus`, the test's own
//! configuration and storage) scrapes a real `corral serve`, evaluates the rules, and answers
//! every expression of both files from corral's series.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{
    Host,
    serve::{Server, http, put_sim},
};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// `promtool` (Debian's `prometheus` package, which `./scripts/setup --tests` installs).
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(deploy().join("prometheus"))
        .output()
        .expect("promtool runs: ./scripts/setup --tests installs Debian's prometheus package");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// Every `expr:` of the rules file (each on one line).
fn rule_expressions() -> Vec<String> {
    let rules = std::fs::read_to_string(deploy().join("prometheus/corral-rules.yml")).expect("rules");
    rules.lines().filter_map(|l| l.trim().strip_prefix("expr: ")).map(str::to_owned).collect()
}

/// Every target expression of the Grafana dashboard.
fn dashboard_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(deploy().join("grafana/corral-serve.json")).expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().expect("an expression").to_owned())
        .collect()
}

/// A query string's value, percent-encoded.
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A Prometheus of its own, killed when dropped.
struct Prometheus {
    child: Child,
    address: String,
    _storage: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scraping `target` (host:port) every second as job `corral`, with the rules loaded.
    fn start(target: &str) -> Prometheus {
        let storage = tempfile::tempdir().expect("dir");
        let rules = deploy().join("prometheus/corral-rules.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: corral\n    static_configs:\n      - targets: ['{target}']\n",
            rules.display()
        );
        let config_path = storage.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("config");
        // A free port: Prometheus cannot be told to pick one and say which.
        let port = TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("address").port();
        let address = format!("127.0.0.1:{port}");
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", storage.path().join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("/usr/bin/prometheus runs: ./scripts/setup --tests installs Debian's prometheus package");
        let prometheus = Prometheus { child, address, _storage: storage };
        prometheus
            .until("Prometheus ready", || (http(&prometheus.address, "GET", "/-/ready", b"").0 == 200).then_some(()));
        prometheus
    }

    /// The query API's answer to `expr` (status and data, as JSON).
    fn query(&self, expr: &str) -> Value {
        let (status, body) = http(&self.address, "GET", &format!("/api/v1/query?query={}", encoded(expr)), b"");
        let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert!(status == 200 && answer["status"] == "success", "{expr}: {status} {body}");
        answer
    }

    /// The series `expr` returns, as (labels, value).
    fn series(&self, expr: &str) -> Vec<(Value, f64)> {
        let answer = self.query(expr);
        let result = answer["data"]["result"].as_array().cloned().unwrap_or_default();
        result
            .into_iter()
            .map(|s| (s["metric"].clone(), s["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)))
            .collect()
    }

    /// Polls `check` until it gives a value; fails naming `what` after 30 s.
    fn until<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(Instant::now() < deadline, "{what}: not within 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn the_rules_pass_promtool_and_a_real_prometheus_reads_corral_serve_with_them() {
    let checked = promtool(&["check", "rules", "corral-rules.yml"]);
    assert!(checked.contains("SUCCESS: 9 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "corral-rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // A server with a model that serves and one whose load fails.
    let host = Host::new();
    let repo = tempfile::tempdir().expect("dir");
    put_sim(repo.path(), "tick", 1);
    std::fs::create_dir_all(repo.path().join("broken/1")).expect("mkdir");
    std::fs::write(repo.path().join("broken/1/model.onnx"), b"not a model").expect("write");
    let server = Server::start(&host, repo.path(), &["--device", "sim:2", "--strict-readiness=false"]);
    server.wait_ready();
    for _ in 0..3 {
        let body = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1.0]}]}"#;
        assert_eq!(http(&server.http, "POST", "/v2/models/tick/infer", body).0, 200);
    }
    let prometheus = Prometheus::start(&server.metrics);
    let ready = prometheus.until("corral_model_ready scraped", || {
        let series = prometheus.series("corral_model_ready");
        (series.len() == 2).then_some(series)
    });
    let value = |model: &str| ready.iter().find(|(labels, _)| labels["model"] == model).map(|(_, v)| *v);
    assert_eq!((value("tick"), value("broken")), (Some(1.0), Some(0.0)), "{ready:?}");
    assert_eq!(prometheus.series("up{job=\"corral\"}").first().map(|(_, v)| *v), Some(1.0));
    // The not-ready alert, from the rules on real series: pending for its minute.
    let pending = "ALERTS{alertname=\"CorralModelNotReady\",alertstate=\"pending\"}";
    let alert = prometheus.until("CorralModelNotReady pending", || prometheus.series(pending).pop());
    assert_eq!(alert.0["model"], "broken", "{alert:?}");
    // Every expression of the rules and the dashboard evaluates on corral's series; those
    // that read a series corral serves (not a rate over a window the test is too young for)
    // return some.
    for expr in rule_expressions().iter().chain(&dashboard_expressions()) {
        prometheus.query(expr);
    }
    for present in ["corral:core_utilisation:rate1m", "corral:autopilot_moves:increase10m", "corral_model_engine"] {
        let series = prometheus.until(present, || Some(prometheus.series(present)).filter(|s| !s.is_empty()));
        assert!(series.iter().all(|(_, v)| v.is_finite()), "{present}: {series:?}");
    }
}
