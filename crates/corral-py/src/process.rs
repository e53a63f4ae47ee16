//! The one runtime of this process: started once (by `corral.init` or the first load) from
//! explicit settings over the environment, then shared by every thread of the process. It
//! lives in a static and is never dropped: at interpreter exit `shutdown` unloads its models
//! (finishing accepted calls), and the cores go when the process ends, however it ends.
//!
//! # Fork protocol
//!
//! A forked child (gunicorn, `multiprocessing` with "fork") inherits the lease's locked
//! descriptors; while it holds them the kernel keeps the parent's cores locked, even after
//! the parent has exited. So:
//!
//! 1. At start, the lease's descriptors are recorded in [`LEASE_FDS`] and a
//!    `pthread_atfork` child handler is registered, once per process.
//! 2. In the child, before any Python code runs, the handler closes those descriptors. It
//!    only reads a set `OnceLock` and calls `close`, which is async-signal-safe; it takes no
//!    lock that another thread could have held at the fork. The parent's locks stay.
//! 3. Every entry point compares the process id with the runtime's owner; in a child it
//!    raises `ForkError` saying to load after the fork or to use `corral launch`. The
//!    child's worker threads do not exist, so nothing of the parent's runtime is ever run,
//!    joined or dropped there (a child's `Model` handles are forgotten, see `model`).

use std::{
    fmt,
    os::fd::RawFd,
    sync::{Mutex, OnceLock},
};

use corral_cores::sync;
use corral_cores::{DeviceSpec, Source, Sources, TakeSettings};
use corral_runtime::{Runtime, RuntimeSettings, Where};
use pyo3::{prelude::*, types::PyDict};

use crate::errors;

/// How long a blocking call sleeps between looks for signals (Ctrl-C).
pub(crate) const SIGNAL_CHECK: std::time::Duration = std::time::Duration::from_millis(20);

static STARTED: OnceLock<Started> = OnceLock::new();
/// Serialises starts; the runtime itself is read without it.
static STARTING: Mutex<()> = Mutex::new(());
/// The lease's descriptors, for the fork handler.
static LEASE_FDS: OnceLock<Vec<RawFd>> = OnceLock::new();

struct Started {
    runtime: Runtime,
    pid: u32,
    settings: InitSettings,
}

/// What `corral.init` was asked for (`None`: from the environment).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct InitSettings {
    device: Option<String>,
    num_cores: Option<String>,
    visible_cores: Option<String>,
    group_sizes: Option<String>,
}

impl fmt::Display for InitSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = [
            ("device", &self.device),
            ("num_cores", &self.num_cores),
            ("visible_cores", &self.visible_cores),
            ("group_sizes", &self.group_sizes),
        ];
        let given: Vec<String> =
            fields.iter().filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={v:?}"))).collect();
        if given.is_empty() { f.write_str("settings from the environment") } else { f.write_str(&given.join(", ")) }
    }
}

extern "C" fn close_lease_in_child() {
    if let Some(fds) = LEASE_FDS.get() {
        for &fd in fds {
            // SAFETY: `fd` is one of the lease's descriptors, inherited by this child; the
            // child never uses the parent's runtime (every entry point checks the pid), so
            // nothing reads these descriptors after they are closed here.
            unsafe {
                libc::close(fd);
            }
        }
    }
}

/// The runtime, for a call made in its own process.
pub(crate) fn runtime() -> PyResult<&'static Runtime> {
    match STARTED.get() {
        Some(started) => {
            check_owner(started.pid)?;
            Ok(&started.runtime)
        }
        None => Err(errors::CorralError::new_err(
            "corral has not started in this process\nhint: call corral.init() or corral.load(...) first",
        )),
    }
}

/// Raises `ForkError` unless this is process `owner`.
pub(crate) fn check_owner(owner: u32) -> PyResult<()> {
    let me = std::process::id();
    if me == owner {
        return Ok(());
    }
    Err(errors::ForkError::new_err(format!(
        "this process ({me}) was forked from process {owner}, whose corral runtime and cores it cannot use\nhint: load models after the fork, in each worker (multiprocessing \"spawn\", gunicorn without preload), or start workers with `corral launch`"
    )))
}

/// Starts the runtime (or checks the one started). Returns the notice of the ONNX engine
/// choice, when there is one to show.
#[pyfunction]
#[pyo3(signature = (device=None, num_cores=None, visible_cores=None, group_sizes=None, *, ort_library=None, explicit=true))]
pub(crate) fn init(
    device: Option<String>,
    num_cores: Option<String>,
    visible_cores: Option<String>,
    group_sizes: Option<String>,
    ort_library: Option<String>,
    explicit: bool,
) -> PyResult<Option<String>> {
    let settings = InitSettings { device, num_cores, visible_cores, group_sizes };
    let _one_start = sync::lock(&STARTING);
    if let Some(started) = STARTED.get() {
        check_owner(started.pid)?;
        if explicit && started.settings != settings {
            return Err(errors::ConfigError::new_err(format!(
                "corral already started in this process with {}; it cannot start again with {settings}\nhint: call corral.init(...) once, before the first load",
                started.settings
            )));
        }
        return Ok(None);
    }
    let lookup = |name: &str| {
        let value = std::env::var(name).ok();
        if name == corral_onnx::DYLIB_ENV { value.or_else(|| ort_library.clone()) } else { value }
    };
    let choice = corral_onnx::onnx_engine(lookup).map_err(|e| errors::ConfigError::new_err(e.to_string()))?;
    let device_spec = parse_device(settings.device.as_deref())?;
    let explicit_sources = Sources {
        visible: settings.visible_cores.as_ref().map(|v| Source::new("visible_cores", v.as_str())),
        num: settings.num_cores.as_ref().map(|v| Source::new("num_cores", v.as_str())),
        groups: settings.group_sizes.as_ref().map(|v| Source::new("group_sizes", v.as_str())),
        shadowed: Vec::new(),
    };
    let runtime_settings = RuntimeSettings {
        take: TakeSettings { device: device_spec, explicit: explicit_sources, lock_dir: None },
        onnx_engine: Some(choice.engine),
        named_engine: Some(corral_onnx::named_engine(&lookup)),
        ..RuntimeSettings::default()
    };
    // Taken with the GIL held: a start releasing it could let another thread block on
    // STARTING while holding the GIL, which this start would need back (a deadlock).
    let runtime = Runtime::new(runtime_settings).map_err(errors::runtime)?;
    if LEASE_FDS.set(runtime.lock_fds()).is_ok() {
        // SAFETY: registers a handler that only closes descriptors (see the module docs);
        // it is registered once, as LEASE_FDS is set once.
        unsafe {
            libc::pthread_atfork(None, None, Some(close_lease_in_child));
        }
    }
    let started = Started { runtime, pid: std::process::id(), settings };
    if STARTED.set(started).is_err() {
        unreachable!("STARTING serialises starts");
    }
    Ok(choice.notice)
}

fn parse_device(device: Option<&str>) -> PyResult<Option<DeviceSpec>> {
    device
        .map(|text| {
            text.parse::<DeviceSpec>()
                .map_err(|e| errors::ConfigError::new_err(format!("device={text:?} is not valid: {e}")))
        })
        .transpose()
}

/// How many cores `device` (else `CORRAL_DEVICE`, else `cpu`) has on this host; takes none.
#[pyfunction]
#[pyo3(signature = (device=None))]
pub(crate) fn device_cores(device: Option<String>) -> PyResult<usize> {
    let settings = TakeSettings { device: parse_device(device.as_deref())?, ..TakeSettings::default() };
    let device = settings.open_device(&|name: &str| std::env::var(name).ok());
    device.map(|d| d.len()).map_err(|e| errors::ConfigError::new_err(e.to_string()))
}

/// Whether the runtime has started: in this process, or (for a forked child) in its parent,
/// in which case every use raises `ForkError`.
#[pyfunction]
pub(crate) fn started() -> bool {
    STARTED.get().is_some()
}

/// The device's name (`cpu`, `sim:inf1.6xlarge`, …).
#[pyfunction]
pub(crate) fn device() -> PyResult<String> {
    Ok(runtime()?.device().to_string())
}

/// One dict per process core: where it is and what ran on it.
#[pyfunction]
pub(crate) fn cores(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let runtime = runtime()?;
    runtime
        .core_stats()
        .into_iter()
        .map(|core| {
            let dict = PyDict::new(py);
            dict.set_item("index", core.index)?;
            dict.set_item("global_index", core.global)?;
            dict.set_item("cpus", core.cpus)?;
            dict.set_item("executions", core.executions)?;
            dict.set_item("busy_seconds", core.busy.as_secs_f64())?;
            dict.set_item("switches", core.switches)?;
            dict.set_item("models", core.models)?;
            Ok(dict)
        })
        .collect()
}

/// Checks a `(start_nc, nc_count)` pair as `neuron_cores_context` receives it.
#[pyfunction]
pub(crate) fn check_placement(start_nc: i64, nc_count: i64) -> PyResult<()> {
    Where::from_neuron(start_nc, nc_count).map(|_| ()).map_err(|e| errors::PlacementError::new_err(e.to_string()))
}

/// The placement a Python context names: `("cores", start, count)`, `("multicore", _, _)`,
/// or MXNet's `("neuron", i, _)`: group `i` when the process has legacy groups, else start
/// core `i`.
pub(crate) fn placement(runtime: &Runtime, context: (String, i64, i64)) -> PyResult<Where> {
    let (kind, a, b) = context;
    let bad = |e: corral_runtime::PlacementError| errors::PlacementError::new_err(e.to_string());
    match kind.as_str() {
        "cores" => Where::from_neuron(a, b).map_err(bad),
        "multicore" => Ok(Where::Multicore),
        "neuron" if a >= 0 && !runtime.layout().groups().is_empty() => Ok(Where::Group(a as usize)),
        "neuron" => Where::from_neuron(a, -1).map_err(bad),
        other => Err(errors::PlacementError::new_err(format!("unknown placement context `{other}`"))),
    }
}

/// Unloads every model at interpreter exit, finishing accepted calls (the owner only).
#[pyfunction]
pub(crate) fn shutdown(py: Python<'_>) {
    if let Some(started) = STARTED.get()
        && started.pid == std::process::id()
    {
        let runtime = &started.runtime;
        py.detach(|| {
            for model in runtime.models() {
                let _ = runtime.unload(model.name());
            }
        });
    }
}

/// The runtime when this process owns it (for unloads from `Drop`, which cannot raise).
pub(crate) fn owned_runtime() -> Option<&'static Runtime> {
    STARTED.get().filter(|started| started.pid == std::process::id()).map(|started| &started.runtime)
}
