//! One instance's stub process: started through the spawner thread (its parent-death signal
//! then outlives the thread that loaded the model), pinned to the instance's CPUs, its
//! stdout and stderr forwarded to the log under the model's name; `initialize` answered before
//! the session is handed out; `finalize` asked when the session drops.

use std::{
    io::{BufRead, BufReader},
    os::{fd::AsRawFd, unix::net::UnixStream, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, OnceLock, TryLockError,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use corral_engine::{
    Asker, CallAnswer, CallRequest, Calls, Control, CoreLoan, EngineError, PartsOutput, PythonModel, Session, Tensor,
};
// `Stub` is no session itself: `Instance` is, and starts it again.
use serde_json::{Value, json};

use corral_cores::sync::lock;

use crate::channel;

/// The protocol the stub speaks (its `PROTOCOL`).
const PROTOCOL: &str = "corral-stub/1";

/// How long starting a stub may take (`initialize`, or `auto_complete_config` with the model's
/// import): the execute timeout, but never less than a minute, since an interpreter importing
/// numpy on a loaded machine takes seconds; no bound when the execute timeout has none.
fn start_timeout(model: &PythonModel) -> Option<Duration> {
    model.execute_timeout.map(|t| t.max(Duration::from_secs(60)))
}

/// What every stub of one model is started with.
pub struct Spawn {
    pub interpreter: PathBuf,
    /// The model's own environment (EXECUTION_ENV_PATH), activated for its stubs.
    pub env: Option<PathBuf>,
    pub folder: PathBuf,
    pub model: PythonModel,
    /// Where its BLS calls go, once the server attached itself.
    pub calls: Arc<OnceLock<Arc<dyn Calls>>>,
}

impl Spawn {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.interpreter);
        command.arg(self.folder.join("_stub.py")).args(args);
        let path = std::env::var_os("PYTHONPATH").map(|old| {
            let mut joined = self.folder.clone().into_os_string();
            joined.push(":");
            joined.push(old);
            joined
        });
        command.env("PYTHONPATH", path.unwrap_or_else(|| self.folder.clone().into_os_string()));
        command.env("PYTHONUNBUFFERED", "1");
        if let Some(env) = &self.env {
            // As an activated environment: its programs and libraries first.
            for (name, sub) in [("PATH", "bin"), ("LD_LIBRARY_PATH", "lib")] {
                let mut value = env.join(sub).into_os_string();
                if let Some(old) = std::env::var_os(name).filter(|o| !o.is_empty()) {
                    value.push(":");
                    value.push(old);
                }
                command.env(name, value);
            }
            command.env("VIRTUAL_ENV", env);
        }
        command
    }
}

/// Runs `auto_complete_config` in a throw-away interpreter (started as the stubs are, so it
/// dies with the server; killed past the model's execute timeout): the completed configuration.
pub fn auto_complete(
    interpreter: &Path,
    env: Option<&Path>,
    folder: &Path,
    model: &PythonModel,
) -> Result<Value, String> {
    let spawn_with = Spawn {
        interpreter: interpreter.to_owned(),
        env: env.map(Path::to_owned),
        folder: folder.to_owned(),
        model: model.clone(),
        calls: Arc::default(),
    };
    let out = folder.join(format!(".auto-complete-{}-{}.json", std::process::id(), unique()));
    let model_py = model.model_py.to_string_lossy();
    let mut command = spawn_with.command(&["auto-complete", &model_py, &out.to_string_lossy()]);
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    guard(&mut command, None, None, &[]);
    let mut child = spawn(command).map_err(|e| {
        format!(
            "cannot start the Python interpreter {}: {e}\nhint: set CORRAL_PYTHON to a Python 3.10 or later with numpy",
            interpreter.display()
        )
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(model.config_json.as_bytes());
    }
    forward(&format!("{} (auto_complete_config)", model.name), child.stdout.take());
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            text
        })
    });
    let deadline = start_timeout(model).map(|t| Instant::now() + t);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if deadline.is_some_and(|d| Instant::now() >= d) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_file(&out);
                return Err(format!(
                    "Failed to initialize Python stub for auto-complete: auto_complete_config did not return within {:.1} s",
                    start_timeout(model).unwrap_or_default().as_secs_f64()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let said = stderr.and_then(|t| t.join().ok()).unwrap_or_default().trim().to_owned();
    let result = std::fs::read_to_string(&out);
    let _ = std::fs::remove_file(&out);
    let result: Value = match result {
        Ok(text) => serde_json::from_str(&text).map_err(|e| e.to_string())?,
        Err(_) => {
            return Err(format!(
                "the Python stub could not run ({status}): {said}\nhint: it needs Python 3.10 or later with numpy; set CORRAL_PYTHON"
            ));
        }
    };
    match (result.get("config"), result.get("error").and_then(Value::as_str)) {
        // Triton's words (python_backend pb_stub.cc).
        (_, Some(error)) => Err(format!("Failed to initialize Python stub for auto-complete: {error}")),
        (Some(config), None) => Ok(config.clone()),
        _ => Err("the stub answered neither a configuration nor an error".to_owned()),
    }
}

/// What a child runs between fork and exec: the channel `fd` moved to descriptor 3, the
/// parent-death signal (and an exit when the server already died before it was set), and
/// `cpus` as its affinity. Only async-signal-safe calls, on values made before the fork.
fn guard(command: &mut Command, fd: Option<i32>, shared: Option<i32>, cpus: &[usize]) {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: `set` is a valid cpu_set_t and `cpu` is below CPU_SETSIZE on any host corral runs on.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    let pinned = !cpus.is_empty();
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec only async-signal-safe calls: dup2, fcntl, prctl, getppid,
    // _exit, sched_setaffinity on a set built before the fork.
    unsafe {
        command.pre_exec(move || {
            // Both descriptors first copied above 10 (so neither is overwritten by the other's
            // move), then onto 3 and 4, which dup2 leaves open across exec.
            let high = |from: Option<i32>| from.map(|f| libc::fcntl(f, libc::F_DUPFD_CLOEXEC, 10));
            let (channel, buffer) = (high(fd), high(shared));
            for (from, to) in [(channel, 3), (buffer, 4)] {
                let Some(from) = from else { continue };
                if from < 0 || libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            if pinned && libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

type Request = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` on the spawner thread, which lives as long as the process: a child's
/// parent-death signal is tied to the thread that forked it.
fn spawn(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("corral-python".to_owned())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the spawner thread starts");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    lock(sender).send((command, reply)).map_err(std::io::Error::other)?;
    answer.recv().map_err(std::io::Error::other)?
}

/// Whether an instance's stub is down, as readiness asks from other threads.
#[derive(Debug, Default)]
pub struct Down {
    /// `None`: its stub runs (or may start at the next call); `Some(t)`: it is down and
    /// starts again no sooner than `t`.
    pub until: Option<Instant>,
}

/// One instance's session: its stub, started again after it died or was killed.
pub struct Instance {
    down: Arc<Mutex<Down>>,
    spawn: Arc<Spawn>,
    index: usize,
    cpus: Vec<usize>,
    stub: Option<Stub>,
    /// Why the last stub is gone, while none runs.
    gone: Option<String>,
    /// The next start may not come before this; it doubles from 0.5 s to 30 s with each
    /// start that fails.
    next_start: Instant,
    backoff: Duration,
    /// A stub starting again in the background since the last one died (the model reports
    /// not ready meanwhile); the next call takes it.
    restarting: Option<std::thread::JoinHandle<Result<Stub, EngineError>>>,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Instance {
    /// The instance's first stub, `initialize` done: a load fails when it fails.
    pub fn start(spawn: Arc<Spawn>, index: usize, cpus: Vec<usize>) -> Result<Instance, EngineError> {
        let stub = Stub::start(&spawn, index, &cpus)?;
        Ok(Instance {
            down: Arc::default(),
            spawn,
            index,
            cpus,
            stub: Some(stub),
            gone: None,
            next_start: Instant::now(),
            backoff: BACKOFF_FIRST,
            restarting: None,
        })
    }

    /// Starts the stub again in the background at once (Triton restarts a dead stub without
    /// waiting for a call); down until it answered `initialize`.
    fn restart(&mut self) {
        let (spawn, index, cpus, down) = (self.spawn.clone(), self.index, self.cpus.clone(), self.down.clone());
        // Down until the thread says otherwise (a start may take long: numpy's import).
        lock(&down).until = Some(Instant::now() + Duration::from_secs(24 * 3600));
        let restarting = std::thread::Builder::new().name("corral-python-restart".to_owned()).spawn(move || {
            let started = Stub::start(&spawn, index, &cpus);
            lock(&down).until = if started.is_ok() { None } else { Some(Instant::now() + BACKOFF_FIRST) };
            started
        });
        // Without a thread, the next call starts it.
        self.restarting = restarting.ok();
    }

    /// Its state for readiness.
    pub fn down(&self) -> &Arc<Mutex<Down>> {
        &self.down
    }

    /// The live stub, started again when the last is gone and the backoff allows.
    fn stub(&mut self) -> Result<&mut Stub, EngineError> {
        if self.stub.is_none() {
            let why = self.gone.clone().unwrap_or_default();
            let now = Instant::now();
            if self.restarting.is_none() && now < self.next_start {
                let wait = self.next_start - now;
                return Err(EngineError::Run(format!("{why}; it starts again in {:.1} s", wait.as_secs_f64())));
            }
            let started = match self.restarting.take() {
                Some(restart) => {
                    restart.join().unwrap_or_else(|_| Err(EngineError::Session("its start panicked".to_owned())))
                }
                None => Stub::start(&self.spawn, self.index, &self.cpus),
            };
            match started {
                Ok(stub) => {
                    // Started in the background before a move, perhaps: on this instance's CPUs now.
                    if let Err(e) = corral_cores::pin_process(stub.pid(), &self.cpus) {
                        tracing::warn!(model = %self.spawn.model.name, "{}: cannot pin its Python stub: {e}", stub.instance);
                    }
                    tracing::warn!(model = %self.spawn.model.name, "{}: Python stub started again after: {why}", stub.instance);
                    self.stub = Some(stub);
                    self.gone = None;
                    self.backoff = BACKOFF_FIRST;
                    lock(&self.down).until = None;
                }
                Err(error) => {
                    self.next_start = now + self.backoff;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    lock(&self.down).until = Some(self.next_start);
                    return Err(EngineError::Run(format!("{why}; starting it again failed: {error}")));
                }
            }
        }
        Ok(self.stub.as_mut().expect("started above"))
    }
}

impl Session for Instance {
    fn run(&mut self, inputs: &[Tensor], switched: bool) -> Result<Vec<Tensor>, EngineError> {
        self.run_lending(inputs, switched, &mut NoLoan)
    }

    fn run_lending(
        &mut self,
        inputs: &[Tensor],
        _switched: bool,
        cores: &mut dyn CoreLoan,
    ) -> Result<Vec<Tensor>, EngineError> {
        self.execute(inputs, cores, None, None).map(|answer| answer.outputs)
    }

    fn run_streaming(
        &mut self,
        inputs: &[Tensor],
        _switched: bool,
        cores: &mut dyn CoreLoan,
        responses: &mut dyn FnMut(CallAnswer),
    ) -> Result<(), EngineError> {
        self.execute(inputs, cores, Some(responses), None).map(|_| ())
    }

    fn run_parts(
        &mut self,
        inputs: &[Tensor],
        parts: &[usize],
        _switched: bool,
        cores: &mut dyn CoreLoan,
    ) -> Result<PartsOutput, EngineError> {
        self.execute(inputs, cores, None, Some(parts))
    }

    fn repin(&mut self, placement: &corral_engine::SessionPlacement) -> Result<bool, EngineError> {
        let cpus = placement.core_cpus.concat();
        // A stub starting again in the background started on the old CPUs: `stub()` pins it
        // when it takes it. Threads a model.py's own child processes run are not moved.
        if let Some(stub) = &self.stub {
            if let Err(e) = corral_cores::pin_process(stub.pid(), &cpus) {
                // Some threads may have moved: all back where the instance stays.
                let _ = corral_cores::pin_process(stub.pid(), &self.cpus);
                return Err(EngineError::Session(format!("{}: moving its Python stub: {e}", stub.instance)));
            }
            tracing::info!(model = %stub.name, "{}: Python stub pid {} moved to CPUs {cpus:?}", stub.instance, stub.pid());
        }
        self.cpus = cpus;
        Ok(true)
    }
}

impl Instance {
    fn execute(
        &mut self,
        inputs: &[Tensor],
        cores: &mut dyn CoreLoan,
        responses: Option<&mut dyn FnMut(CallAnswer)>,
        parts: Option<&[usize]>,
    ) -> Result<PartsOutput, EngineError> {
        let timeout = self.spawn.model.execute_timeout;
        let calls = self.spawn.calls.get().cloned();
        let stub = self.stub()?;
        match stub.execute(inputs, timeout, calls, cores, responses, parts) {
            Ok(outputs) => Ok(outputs),
            Err(Failure::Model(message)) => Err(EngineError::Run(message)),
            Err(Failure::Gone(why)) => {
                self.stub = None;
                self.gone = Some(why.clone());
                self.next_start = Instant::now();
                self.restart();
                Err(EngineError::Run(why))
            }
        }
    }
}

/// Cores nobody lends (a session run without a scheduler).
struct NoLoan;

impl CoreLoan for NoLoan {
    fn lend(&mut self) {}
    fn reclaim(&mut self) {}
}

/// Why an execute failed: the model's answer (an error response, an exception), or the stub
/// itself (dead, or silent past the timeout and killed).
enum Failure {
    Model(String),
    Gone(String),
}

/// One instance's live stub.
pub struct Stub {
    name: String,
    instance: String,
    /// Read by the session's thread only.
    stream: UnixStream,
    /// Written by the session's thread and by the answers of the stub's BLS calls.
    writer: Arc<Mutex<UnixStream>>,
    /// The buffer an execute's tensors cross (`channel::Shared`), when one could be made.
    shared: Option<channel::Shared>,
    child: Child,
    /// Why it is gone, once it is: every later call fails with it.
    gone: Option<String>,
    /// Executes sent so far: each execute's number tags its frames.
    executes: u64,
    /// Where the answers of its BLS calls go.
    answers: Answers,
    /// The server its model control reaches from `finalize` (readiness), if any.
    calls: Option<Arc<dyn Calls>>,
}

/// Writes the answers of a stub's BLS calls to it: a small one at once, from the thread it
/// came on, when nothing of this stub's waits to be written before it and the socket takes it
/// without blocking (a thread hop less on each call's way back); any other through a thread of
/// the stub's own, so that a stub slow to read never holds the server's threads that finished
/// its calls.
#[derive(Clone)]
struct Answers {
    queue: mpsc::Sender<(Value, Vec<Tensor>)>,
    /// Answers queued and not written yet: while there are any, later ones queue behind them,
    /// so that one call's answers reach the stub in order.
    queued: Arc<AtomicUsize>,
    writer: Arc<Mutex<UnixStream>>,
}

impl Answers {
    /// Frames up to this long are written at once (a Unix socket takes them whole or not at all).
    const AT_ONCE_MAX: usize = 8 << 10;

    fn start(writer: Arc<Mutex<UnixStream>>) -> std::io::Result<Answers> {
        let (queue, to_write) = mpsc::channel::<(Value, Vec<Tensor>)>();
        let queued = Arc::new(AtomicUsize::new(0));
        let (thread_writer, thread_queued) = (writer.clone(), queued.clone());
        std::thread::Builder::new().name("corral-python-answers".to_owned()).spawn(move || {
            for (header, tensors) in to_write {
                // A stub gone meanwhile has no one to answer.
                let _ = channel::write(&mut lock(&thread_writer), header, &tensors);
                thread_queued.fetch_sub(1, Ordering::AcqRel);
            }
        })?;
        Ok(Answers { queue, queued, writer })
    }

    fn send(&self, header: Value, tensors: Vec<Tensor>) {
        if self.queued.load(Ordering::Acquire) == 0
            && let Some(frame) = channel::small_frame(header.clone(), &tensors, Answers::AT_ONCE_MAX)
        {
            let stream = match self.writer.try_lock() {
                Ok(stream) => Some(stream),
                Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some(mut stream) = stream {
                match channel::send_now(&mut stream, &frame) {
                    // A stub gone has no one to answer.
                    channel::Sent::All | channel::Sent::Failed => return,
                    channel::Sent::WouldBlock => {}
                }
            }
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        let _ = self.queue.send((header, tensors));
    }
}

impl Stub {
    /// Starts the stub of instance `index` on `cpus` (none: no pinning) and runs `initialize`.
    pub fn start(spawn_with: &Spawn, index: usize, cpus: &[usize]) -> Result<Stub, EngineError> {
        let model = &spawn_with.model;
        let instance = format!("{}_{index}", model.name);
        let (stream, theirs) = UnixStream::pair().map_err(|e| EngineError::Session(e.to_string()))?;
        let mut command = spawn_with.command(&["serve", &model.model_py.to_string_lossy()]);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let (fd, cpus) = (theirs.as_raw_fd(), cpus.to_vec());
        let threads = cpus.len().max(1).to_string();
        for name in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"] {
            command.env(name, &threads);
        }
        // The shared buffer: without one (no memfd here), tensors cross the socket.
        let shared = channel::Shared::new()
            .inspect_err(|e| tracing::warn!(model = %model.name, "no shared buffer for the stub ({e}): tensors cross its socket"))
            .ok();
        guard(&mut command, Some(fd), shared.as_ref().map(channel::Shared::fd), &cpus);
        let mut child = spawn(command).map_err(|e| {
            EngineError::Session(format!(
                "cannot start the Python interpreter {}: {e}\nhint: set CORRAL_PYTHON to a Python 3.10 or later with numpy",
                spawn_with.interpreter.display()
            ))
        })?;
        drop(theirs);
        forward(&instance, child.stdout.take());
        forward(&instance, child.stderr.take());
        let writer = stream.try_clone().map_err(|e| EngineError::Session(e.to_string()))?;
        let writer = Arc::new(Mutex::new(writer));
        let answers = Answers::start(writer.clone()).map_err(|e| EngineError::Session(e.to_string()))?;
        let shared_size = shared.as_ref().map(|_| channel::Shared::SIZE);
        let mut stub = Stub {
            name: model.name.clone(),
            instance: instance.clone(),
            stream,
            writer,
            shared,
            child,
            gone: None,
            executes: 0,
            answers,
            calls: spawn_with.calls.get().cloned(),
        };
        let args = json!({
            "model_config": model.config_json,
            "model_instance_kind": "CPU",
            "model_instance_name": instance,
            "model_instance_device_id": "0",
            "model_repository": model.repository,
            "model_version": model.version,
            "model_name": model.name,
        });
        let hello =
            json!({"protocol": PROTOCOL, "corral": env!("CARGO_PKG_VERSION"), "args": args, "shared": shared_size});
        // A hung `initialize` must not hold the instance.
        let _ = stub.stream.set_read_timeout(start_timeout(model));
        // Model control from `initialize`: readiness is answered, a load or unload refused.
        let (calls, answers) = (stub.calls.clone(), stub.answers.clone());
        let mut from_initialize = |header: &Value, files: Vec<Tensor>| {
            let asker = Asker { model: model.name.clone(), inside_control: true };
            control(header, files, calls.as_ref(), &answers, asker);
        };
        let answer = stub
            .write(hello, &[])
            .and_then(|()| read_answer(&mut stub.stream, &stub.writer, stub.shared.as_ref(), &mut from_initialize));
        match answer {
            Ok((header, _)) if header["ok"] == true => {
                tracing::info!(model = %stub.name, "{instance}: Python stub pid {} ready", stub.child.id());
                Ok(stub)
            }
            // Triton's words (python_backend pb_stub.cc), then which instance.
            Ok((header, _)) => Err(EngineError::Session(format!(
                "Failed to initialize Python stub: {} (instance {instance})",
                header["error"].as_str().unwrap_or("no reason given")
            ))),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                let _ = stub.child.kill();
                stub.gone = Some(String::new());
                Err(EngineError::Session(format!(
                    "Failed to initialize Python stub: initialize did not return within {:.1} s; it was killed (instance {instance})",
                    start_timeout(model).unwrap_or_default().as_secs_f64()
                )))
            }
            Err(e) => {
                let _ = stub.child.kill();
                let status = stub.child.wait().map(|s| s.to_string()).unwrap_or_default();
                stub.gone = Some(String::new());
                Err(EngineError::Session(format!("the Python stub of {instance} ended at start ({status}): {e}")))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Each line `pipe` gives, to the server's stderr under the instance's name, whatever the log
/// level (as Triton passes a stub's output through).
fn forward(instance: &str, pipe: Option<impl std::io::Read + Send + 'static>) {
    let Some(pipe) = pipe else { return };
    let instance = instance.to_owned();
    let _ = std::thread::Builder::new().name("corral-python-log".to_owned()).spawn(move || {
        use std::io::Write;
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            // Not eprintln!: a closed stderr must not end the reading (the stub would block).
            let _ = writeln!(std::io::stderr(), "{instance}: {line}");
        }
    });
}

impl Stub {
    fn write(&self, header: Value, tensors: &[Tensor]) -> std::io::Result<()> {
        channel::write(&mut lock(&self.writer), header, tensors)
    }

    /// One `execute`, waiting `timeout` at most for its answer; the BLS calls it makes
    /// meanwhile go to `calls`, and from the first the instance's `cores` are lent (their
    /// target may share them) until the execute ends.
    ///
    /// A decoupled model's request (`responses`): each `response` frame its sender writes goes
    /// to `responses` as it comes; the request ends once `execute` returned (`executed`) and
    /// the final flag was sent, which a thread of the model may do after `execute` returned.
    fn execute(
        &mut self,
        inputs: &[Tensor],
        timeout: Option<Duration>,
        calls: Option<Arc<dyn Calls>>,
        cores: &mut dyn CoreLoan,
        mut responses: Option<&mut dyn FnMut(CallAnswer)>,
        parts: Option<&[usize]>,
    ) -> Result<PartsOutput, Failure> {
        // Silence is bounded, not the whole execute: each frame the stub sends starts it again.
        let mut deadline = timeout.map(|t| Instant::now() + t);
        let decoupled = responses.is_some();
        let (mut executed, mut finished) = (false, false);
        self.executes += 1;
        let seq = self.executes;
        let mut header = json!({"op": "execute", "decoupled": decoupled, "seq": seq});
        if let Some(parts) = parts {
            header["parts"] = json!(parts);
        }
        let written = channel::write_with(&mut lock(&self.writer), header, inputs, self.shared.as_mut());
        let answer = written.and_then(|()| {
            loop {
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
                let _ = self.stream.set_read_timeout(left);
                let (header, tensors) = channel::read_with(&mut self.stream, self.shared.as_ref())?;
                deadline = timeout.map(|t| Instant::now() + t);
                let stale = header.get("seq").and_then(Value::as_u64).is_some_and(|s| s != seq);
                match (header["op"].as_str(), responses.as_mut()) {
                    // A response of an earlier request (its thread outlived it): nobody takes it.
                    (Some("response" | "executed"), _) if stale => {}
                    (Some("metric"), _) => crate::metrics::record(&header),
                    (Some("call"), _) => {
                        cores.lend();
                        self.call(&header, tensors, calls.as_ref());
                    }
                    (Some("control"), _) => {
                        let asker = Asker { model: self.name.clone(), inside_control: false };
                        control(&header, tensors, calls.as_ref(), &self.answers, asker);
                    }
                    (Some("response"), Some(send)) if !finished => {
                        finished = header["final"] == true;
                        send(CallAnswer { result: answer_of(&header, tensors), last: finished });
                    }
                    (Some("executed"), Some(send)) => {
                        executed = true;
                        if let (Some(error), false) = (header["error"].as_str(), finished) {
                            finished = true;
                            let failure = corral_engine::CallFailure { code: "INTERNAL", message: error.to_owned() };
                            send(CallAnswer { result: Err(failure), last: true });
                        }
                    }
                    (Some("response"), Some(_)) => {} // after the final flag: nobody takes it
                    _ => break Ok((header, tensors)),
                }
                if executed && finished {
                    break Ok((json!({}), Vec::new()));
                }
            }
        });
        cores.reclaim();
        match answer {
            Ok((header, outputs)) => match header.get("error").and_then(Value::as_str) {
                Some(error) => Err(Failure::Model(error.to_owned())),
                // A batch's requests that failed alone (`failed`: one entry per part, null
                // for those whose rows the outputs hold).
                None => Ok(PartsOutput {
                    outputs,
                    failed: header["failed"]
                        .as_array()
                        .map(|each| each.iter().map(|e| e.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default(),
                }),
            },
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                let pid = self.child.id();
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.gone = Some(String::new());
                Err(Failure::Gone(format!(
                    "model '{}' instance {}: execute did not return within {:.1} s (the model's execute timeout: [python] execute_timeout_s in config.toml, corral.python.execute_timeout_s in config.pbtxt); its stub (pid {pid}) was killed",
                    self.name,
                    self.instance,
                    timeout.unwrap_or_default().as_secs_f64()
                )))
            }
            Err(e) => {
                // The stub ended, or said something that is no answer (then it is ended): reap
                // it to say how.
                let _ = self.child.kill();
                let status = self.child.wait().map_or_else(|w| w.to_string(), |s| s.to_string());
                self.gone = Some(String::new());
                Err(Failure::Gone(format!(
                    "model '{}' instance {}: its Python stub (pid {}) died ({status}) during execute: {e}",
                    self.name,
                    self.instance,
                    self.child.id()
                )))
            }
        }
    }
}

/// The stub's next answer outside an `execute` (to `initialize` or `finalize`), the metric
/// changes before it recorded, model control handed to `control`, and BLS calls answered with
/// an error (they are served while an `execute` runs; one made outside it, from a thread of
/// the model, would otherwise wait forever).
fn read_answer(
    stream: &mut UnixStream,
    writer: &Mutex<UnixStream>,
    shared: Option<&channel::Shared>,
    control: &mut dyn FnMut(&Value, Vec<Tensor>),
) -> std::io::Result<(Value, Vec<Tensor>)> {
    loop {
        let (header, tensors) = channel::read_with(stream, shared)?;
        match header["op"].as_str() {
            Some("metric") => crate::metrics::record(&header),
            Some("control") => control(&header, tensors),
            Some("call") => {
                let refused = json!({"op": "answer", "id": header["id"], "final": true, "code": "UNAVAILABLE",
                    "error": "BLS calls are served while execute runs; this one came outside it"});
                let _ = channel::write(&mut lock(writer), refused, &[]);
            }
            _ => return Ok((header, tensors)),
        }
    }
}

/// A `response` frame as an answer: its tensors, or its error (python_backend's codes).
fn answer_of(header: &Value, tensors: Vec<Tensor>) -> Result<Vec<Tensor>, corral_engine::CallFailure> {
    const CODES: [&str; 8] = [
        "UNKNOWN",
        "INTERNAL",
        "NOT_FOUND",
        "INVALID_ARG",
        "UNAVAILABLE",
        "UNSUPPORTED",
        "ALREADY_EXISTS",
        "CANCELLED",
    ];
    match header["error"].as_str() {
        Some(message) => {
            let code = header["code"].as_u64().and_then(|c| CODES.get(c as usize)).copied().unwrap_or("INTERNAL");
            Err(corral_engine::CallFailure { code, message: message.to_owned() })
        }
        None => Ok(tensors),
    }
}

/// A model's model-control request (`op: control`: `what` is `load`, `unload` or `ready`; a
/// load's files are UINT8 tensors named by their `file:` keys) handed to `calls`; its outcome
/// goes back to the stub as the answer of the request's `id`: `ready`, or `error` and `code`.
fn control(header: &Value, files: Vec<Tensor>, calls: Option<&Arc<dyn Calls>>, answers: &Answers, asker: Asker) {
    let text = |key: &str| header[key].as_str().unwrap_or_default().to_owned();
    let request = match header["what"].as_str() {
        Some("load") => Control::Load {
            model: text("model"),
            config: text("config"),
            files: files.into_iter().map(|t| (t.name.clone(), t.data.to_le_bytes())).collect(),
        },
        Some("unload") => Control::Unload { model: text("model"), dependents: header["dependents"] == true },
        _ => Control::Ready { model: text("model"), version: text("version") },
    };
    let (id, answers) = (header["id"].clone(), answers.clone());
    let answer = move |outcome: Result<bool, corral_engine::CallFailure>| {
        let header = match outcome {
            Ok(ready) => json!({"op": "answer", "id": id, "final": true, "ready": ready}),
            Err(failure) => {
                json!({"op": "answer", "id": id, "final": true, "error": failure.message, "code": failure.code})
            }
        };
        answers.send(header, Vec::new());
    };
    match calls {
        Some(calls) => calls.control(asker, request, Box::new(answer)),
        None => answer(Err(corral_engine::CallFailure {
            code: "UNAVAILABLE",
            message: "model control reaches the server only under corral serve, while it runs".to_owned(),
        })),
    }
}

impl Stub {
    /// Hands one BLS call of the stub to `calls`; its answers go back to the stub as they
    /// come (`op: answer`, the call's `id`, `final` on the last), from whichever thread.
    fn call(&self, header: &Value, inputs: Vec<Tensor>, calls: Option<&Arc<dyn Calls>>) {
        let id = header["id"].clone();
        let text = |key: &str| header[key].as_str().unwrap_or_default().to_owned();
        let correlation_id = match &header["correlation_id"] {
            Value::Number(n) if n.as_u64() != Some(0) => Some(n.to_string()),
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let request = CallRequest {
            model: text("model"),
            version: text("version"),
            id: text("request_id"),
            inputs,
            outputs: header["outputs"]
                .as_array()
                .map(|names| names.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            correlation_id,
            flags: header["flags"].as_u64().unwrap_or(0) as u32,
            decoupled: header["decoupled"] == true,
        };
        let answers = self.answers.clone();
        let answer = move |answer: CallAnswer| {
            let (header, tensors) = match answer.result {
                Ok(tensors) => (json!({"op": "answer", "id": id, "final": answer.last}), tensors),
                Err(failure) => (
                    json!({"op": "answer", "id": id, "final": answer.last, "error": failure.message, "code": failure.code}),
                    Vec::new(),
                ),
            };
            answers.send(header, tensors);
        };
        match calls {
            Some(calls) => calls.call(request, Box::new(answer)),
            None => {
                answer(CallAnswer {
                    result: Err(corral_engine::CallFailure {
                        code: "UNAVAILABLE",
                        message: "BLS calls reach other models only under corral serve".to_owned(),
                    }),
                    last: true,
                });
            }
        }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        if self.gone.is_none() {
            let _ = self.stream.set_read_timeout(Some(Duration::from_secs(5)));
            let answers = self.answers.clone();
            let asker = Asker { model: self.name.clone(), inside_control: true };
            // Model control from `finalize`: readiness is answered, a load or unload refused
            // (the server answers that it is shutting down once it is gone).
            let calls = self.calls.clone();
            let mut from_finalize =
                |header: &Value, files: Vec<Tensor>| control(header, files, calls.as_ref(), &answers, asker.clone());
            let _ = self
                .write(json!({"op": "finalize"}), &[])
                .and_then(|()| read_answer(&mut self.stream, &self.writer, self.shared.as_ref(), &mut from_finalize));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
