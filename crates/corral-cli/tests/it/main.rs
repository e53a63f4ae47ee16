//! The `corral` binary as a user meets it: real processes, a private lock folder per test,
//! snapshots of what it prints with pids and times filtered.

mod config;
mod cpu;
mod dashboard;
mod deploy;
mod device_plugin;
mod launch;
mod live;
mod ls;
mod models;
mod ownership;
mod planning;
mod prometheus;
mod python_models;
mod quota;
mod report;
mod schema;
mod serve;
mod tidy;

use std::{
    io::{BufRead, BufReader},
    process::{Child, ChildStdout, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;

/// How long a test waits for a child to say something before failing (never reached when
/// things work; it keeps a broken build from hanging CI).
const CHILD_WAIT_MAX: Duration = Duration::from_secs(60);

/// A private registry: every command made here shares its lock folder and nothing else.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        Host { dir: tempfile::tempdir().expect("temp dir") }
    }

    /// `corral ARGS` with a clean environment: no inherited core settings, our lock folder.
    fn corral(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_corral"));
        command.args(args);
        for (name, _) in std::env::vars() {
            if name.starts_with("CORRAL_") || name.starts_with("NEURON") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        command.env("CORRAL_LOCK_DIR", self.dir.path());
        // Tests that are not about the engine's choice name theirs, so that what they see
        // never depends on a timing; those about it set or remove the variable.
        command.env("CORRAL_ONNX_ENGINE", "onnxruntime");
        command
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.corral(args);
        command.envs(env.iter().copied());
        command.output().expect("corral runs")
    }

    /// Starts `corral reserve --json ARGS` and waits until it holds its cores.
    fn reserve(&self, args: &[&str], env: &[(&str, &str)]) -> Holder {
        let mut command = self.corral(&[&["reserve", "--json"], args].concat());
        command.envs(env.iter().copied());
        Holder::start(command).expect("reserve succeeds")
    }

    fn ls(&self, device: &str) -> Value {
        let output = self.run(&["ls", "--json", "--device", device], &[]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("ls --json prints JSON")
    }
}

/// A running child whose first stdout line (JSON or text) was read; killed when dropped.
struct Holder {
    child: Child,
    first_line: String,
    /// `None` only while a read is under way.
    stdout: Option<BufReader<ChildStdout>>,
}

impl Holder {
    /// Starts `command` and reads its first stdout line; on failure returns its stderr.
    fn start(mut command: Command) -> Result<Holder, String> {
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (line, stdout) = read_line(stdout);
        stdout_line_or_stderr(child, line, stdout)
    }

    fn info(&self) -> Value {
        serde_json::from_str(&self.first_line).expect("reserve --json prints JSON")
    }

    fn cores(&self) -> Vec<u64> {
        self.info()["cores"].as_array().expect("cores").iter().map(|c| c.as_u64().expect("index")).collect()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).expect("signal");
    }

    /// Waits for the child to exit and returns (status code or 128 + signal, stderr).
    fn wait(mut self) -> (i32, String) {
        use std::os::unix::process::ExitStatusExt;
        let status = self.child.wait().expect("wait");
        let mut stderr = String::new();
        std::io::Read::read_to_string(self.child.stderr.as_mut().expect("piped"), &mut stderr).expect("stderr");
        (status.code().unwrap_or_else(|| 128 + status.signal().expect("killed")), stderr)
    }

    /// The next stdout line. Regression: this once waited inside `thread::scope`, which joins
    /// the blocked reader before the timeout could fire, so a silent child hung the suite.
    fn next_line(&mut self) -> String {
        let stdout = self.stdout.take().expect("the last read gave the reader back");
        let (line, stdout) = read_line(stdout);
        self.stdout = Some(stdout);
        line.expect("child printed a line before closing its stdout")
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one line on a helper thread, giving up after [`CHILD_WAIT_MAX`].
fn read_line(mut stdout: BufReader<ChildStdout>) -> (Option<String>, BufReader<ChildStdout>) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let got = stdout.read_line(&mut line).ok().filter(|&n| n > 0).map(|_| line);
        let _ = tx.send((got, stdout));
    });
    rx.recv_timeout(CHILD_WAIT_MAX).expect("child printed a line or exited in time")
}

fn stdout_line_or_stderr(
    mut child: Child,
    line: Option<String>,
    stdout: BufReader<ChildStdout>,
) -> Result<Holder, String> {
    match line {
        Some(line) => Ok(Holder { child, first_line: line.trim_end().to_owned(), stdout: Some(stdout) }),
        None => {
            let _ = child.wait();
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().expect("piped"), &mut stderr).expect("stderr");
            Err(stderr)
        }
    }
}

/// The variable that lets a test the kernel will not run be skipped: a comma-separated list
/// of capabilities (`cgroups`). CI never sets it.
const TEST_SKIP_ENV: &str = "CORRAL_TEST_SKIP";

/// A test found that this machine lacks `capability` (the kernel refused, `reason` says how):
/// it fails, unless `CORRAL_TEST_SKIP` lists the capability, in which case this returns (with
/// a note on stderr) and the caller returns.
#[track_caller]
fn cannot_run(capability: &str, reason: impl std::fmt::Display) {
    let listed = std::env::var(TEST_SKIP_ENV).is_ok_and(|list| list.split(',').any(|c| c.trim() == capability));
    if listed {
        eprintln!("skipped ({TEST_SKIP_ENV} lists {capability}): {reason}");
        return;
    }
    panic!(
        "{reason}\nhint: this test needs {capability}; run as root on a host that allows it, or set {TEST_SKIP_ENV}={capability} to skip it"
    );
}

/// Cores held in an `ls --json` listing, with their owner pids.
fn held(listing: &Value) -> Vec<(u64, u64)> {
    listing["cores"]
        .as_array()
        .expect("cores")
        .iter()
        .filter(|c| c["held"] == true)
        .map(|c| (c["index"].as_u64().expect("index"), c["owner"]["pid"].as_u64().unwrap_or(0)))
        .collect()
}
