//! The `Model` class: a loaded model that any number of Python threads call at once.
//!
//! A call converts its inputs under the GIL (`convert`), then submits and waits with the GIL
//! released, waking every [`SIGNAL_CHECK`] to let Python run signal handlers, so Ctrl-C
//! raises `KeyboardInterrupt` promptly (the call itself completes in the background).
//! `set_neuron_cores` and `set_multicore` move a model with `Runtime::replace`: the old
//! instances answer calls until the new ones are ready, then drain.

use std::{path::PathBuf, sync::RwLock};

use corral_cores::sync;
use corral_engine::{InputError, ModelSource, Tensor};
use corral_runtime::{Inference, ModelDef, Runtime, repository};
use pyo3::{
    prelude::*,
    types::{PyDict, PyTuple},
};

use crate::{
    completion, convert, errors,
    process::{self, SIGNAL_CHECK},
};

/// A placement context as Python passes it: `(kind, a, b)`, see `process::placement`.
type Context = (String, i64, i64);

/// Loads `path` (an `.onnx` file, or a model folder with `config.toml` or `config.pbtxt`) under
/// `name` (default: the file's stem or the folder's name, made unique in this process), placed
/// by `context`, else the folder's configuration, else on the least-used cores. `autopilot`
/// bounds the autopilot's instances of it (SPEC §11), over the folder's. `engine` runs it on
/// that engine (`auto`: measured), over the folder's.
#[pyfunction]
#[pyo3(signature = (path, name=None, context=None, elastic=None, autopilot=None, engine=None))]
pub(crate) fn load(
    py: Python<'_>,
    path: PathBuf,
    name: Option<String>,
    context: Option<Context>,
    elastic: Option<bool>,
    autopilot: Option<(usize, usize)>,
    engine: Option<String>,
) -> PyResult<Model> {
    let runtime = process::runtime()?;
    let mut def = read(&path)?;
    if let Some(engine) = engine {
        if !["onnxruntime", "openvino", "tract", "auto"].contains(&engine.as_str()) {
            return Err(errors::ConfigError::new_err(format!(
                "engine = `{engine}` is not an engine; use onnxruntime, openvino, tract or auto"
            )));
        }
        if matches!(def.source, corral_engine::ModelSource::Onnx(_)) {
            def.engine = Some(engine);
        }
    }
    if let Some(elastic) = elastic {
        def.elastic = elastic;
    }
    if let Some((min, max)) = autopilot {
        def = def.autopilot(min, max);
    }
    if let Some(context) = context {
        def.placement = Some(process::placement(runtime, context)?);
    }
    match name {
        Some(name) => load_def(py, runtime, ModelDef { name, ..def }),
        None => load_unique(py, runtime, def),
    }
}

fn read(path: &std::path::Path) -> PyResult<ModelDef> {
    let bad = |reason: String| errors::ModelLoadError::new_err(format!("cannot load {}: {reason}", path.display()));
    if path.is_dir() {
        return match repository::read_folder(path) {
            Ok(Some(folder)) => Ok(folder.def),
            Ok(None) => Err(bad("the folder holds no config.toml, config.pbtxt or <version>/model.onnx".to_owned())),
            Err(error) => Err(errors::ModelLoadError::new_err(error.to_string())),
        };
    }
    if !path.exists() {
        return Err(bad("no such file or folder".to_owned()));
    }
    let name = path.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
    match path.extension().and_then(|e| e.to_str()) {
        Some("onnx") => Ok(ModelDef::onnx(name, path)),
        // OpenVINO IR (with its .bin beside it): only OpenVINO reads it.
        Some("xml") => Ok(ModelDef { engine: Some("openvino".to_owned()), ..ModelDef::onnx(name, path) }),
        _ => Err(bad(
            "is neither an .onnx model, OpenVINO IR (.xml), nor a model folder (with config.toml or config.pbtxt)"
                .to_owned(),
        )),
    }
}

/// Loads under the definition's name, or `name#2`, `name#3`, … when it is taken (the seeds
/// load one file twice).
fn load_unique(py: Python<'_>, runtime: &'static Runtime, def: ModelDef) -> PyResult<Model> {
    let base = def.name.clone();
    for n in 1.. {
        let name = if n == 1 { base.clone() } else { format!("{base}#{n}") };
        if runtime.model(&name).is_some() {
            continue;
        }
        match py.detach(|| runtime.load(ModelDef { name, ..def.clone() })) {
            Ok(model) => return loaded(py, def.clone(), model),
            // Another thread took the name meanwhile: try the next.
            Err(corral_runtime::LoadError::Exists { .. }) => continue,
            Err(error) => return Err(errors::load(error)),
        }
    }
    unreachable!("some name is free")
}

fn load_def(py: Python<'_>, runtime: &'static Runtime, def: ModelDef) -> PyResult<Model> {
    let model = py.detach(|| runtime.load(def.clone())).map_err(errors::load)?;
    loaded(py, def, model)
}

/// The Python handle of a model just loaded; a load that shares cores warns (`UserWarning`).
fn loaded(py: Python<'_>, def: ModelDef, model: corral_runtime::Model) -> PyResult<Model> {
    if let Some(warning) = model.warning() {
        let message = std::ffi::CString::new(warning.replace('\0', " ")).expect("NULs were replaced");
        PyErr::warn(py, &py.get_type::<pyo3::exceptions::PyUserWarning>(), &message, 2)?;
    }
    Ok(Model::new(def, model))
}

/// A model loaded on this process's cores. Call it with arrays by position, by name, or as
/// one dict; it returns one array for a one-output model, else a dict name -> array.
#[pyclass(frozen, module = "corral")]
pub(crate) struct Model {
    /// The process that loaded it (a forked child must not use it).
    owner: u32,
    /// What was loaded, for moves and copies.
    def: ModelDef,
    /// `None` once unloaded.
    handle: RwLock<Option<corral_runtime::Model>>,
}

impl Model {
    fn new(def: ModelDef, model: corral_runtime::Model) -> Model {
        let def = ModelDef { name: model.name().to_owned(), ..def };
        Model { owner: std::process::id(), def, handle: RwLock::new(Some(model)) }
    }

    fn handle(&self) -> PyResult<corral_runtime::Model> {
        process::check_owner(self.owner)?;
        let handle = sync::read(&self.handle);
        handle.clone().ok_or_else(|| {
            errors::ModelUnloadedError::new_err(format!("model `{}` is not loaded\nhint: load it again", self.def.name))
        })
    }

    /// Runs one call, blocking with the GIL released.
    fn run(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Inference> {
        let model = self.handle()?;
        let tensors = inputs(py, &model, args, kwargs)?;
        let first = py.detach(|| model.submit(tensors).map(|reply| reply.wait_timeout(SIGNAL_CHECK)));
        let mut reply = match first {
            Err(error) => return Err(errors::infer(error)),
            Ok(Ok(answer)) => return answer.map_err(errors::infer),
            Ok(Err(reply)) => reply,
        };
        loop {
            py.check_signals()?;
            match py.detach(|| reply.wait_timeout(SIGNAL_CHECK)) {
                Ok(answer) => return answer.map_err(errors::infer),
                Err(pending) => reply = pending,
            }
        }
    }
}

/// The call's inputs as tensors: by position (in the model's input order), by name, or one dict.
fn inputs(
    py: Python<'_>,
    model: &corral_runtime::Model,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Vec<Tensor>> {
    let specs = model.inputs();
    let expected = |name: &str| specs.iter().find(|s| s.name == name).map(|s| s.datatype);
    let named = |dict: &Bound<'_, PyDict>| -> PyResult<Vec<Tensor>> {
        dict.iter()
            .map(|(key, value)| {
                let name: String = key.extract().map_err(|_| {
                    errors::InferenceError::new_err(format!(
                        "model `{}`: input names must be strings, got {key}",
                        model.name()
                    ))
                })?;
                convert::tensor(py, model.name(), &name, &value, expected(&name))
            })
            .collect()
    };
    let kwargs = kwargs.filter(|k| !k.is_empty());
    if let Some(kwargs) = kwargs {
        if !args.is_empty() {
            return Err(errors::InferenceError::new_err(format!(
                "model `{}`: give inputs by position or by name, not both",
                model.name()
            )));
        }
        return named(kwargs);
    }
    if args.len() == 1
        && let Ok(dict) = args.get_item(0)?.cast::<PyDict>()
    {
        return named(dict);
    }
    if args.len() != specs.len() {
        let error = InputError::Count {
            expected: specs.len(),
            got: args.len(),
            names: specs.iter().map(|s| s.name.clone()).collect(),
        };
        return Err(errors::InferenceError::new_err(format!("model `{}`: {error}", model.name())));
    }
    specs
        .iter()
        .zip(args.iter())
        .map(|(spec, value)| convert::tensor(py, model.name(), &spec.name, &value, Some(spec.datatype)))
        .collect()
}

fn spec_tuples<'py>(py: Python<'py>, specs: &[corral_engine::TensorSpec]) -> PyResult<Vec<Bound<'py, PyTuple>>> {
    specs
        .iter()
        .map(|spec| {
            let shape: Vec<Option<i64>> = spec.shape.iter().map(|&d| (d >= 0).then_some(d)).collect();
            let shape = PyTuple::new(py, shape)?;
            PyTuple::new(
                py,
                [
                    spec.name.clone().into_pyobject(py)?.into_any(),
                    convert::numpy_name(spec.datatype).into_pyobject(py)?.into_any(),
                    shape.into_any(),
                ],
            )
        })
        .collect()
}

#[pymethods]
impl Model {
    /// Runs one inference: one array for a one-output model, else a dict name -> array.
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut inference = self.run(py, args, kwargs)?;
        if inference.outputs.len() == 1 {
            let tensor = inference.outputs.pop().expect("one output");
            return convert::array(py, tensor);
        }
        Ok(convert::outputs_dict(py, inference)?.into_any())
    }

    /// Runs one inference and returns every output by name.
    #[pyo3(signature = (*args, **kwargs))]
    fn infer<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let inference = self.run(py, args, kwargs)?;
        convert::outputs_dict(py, inference)
    }

    /// Submits one inference and returns an asyncio future of the dict `infer` returns. Call it
    /// inside a running event loop; no thread waits for the answer.
    #[pyo3(signature = (*args, **kwargs))]
    fn infer_async<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let model = self.handle()?;
        let tensors = inputs(py, &model, args, kwargs);
        completion::submit(py, &model, tensors)
    }

    /// The model's name in this process (unique: a second load of one file is `name#2`).
    #[getter]
    fn name(&self) -> &str {
        &self.def.name
    }

    /// The model file, or `None` for a simulated model.
    #[getter]
    fn path(&self) -> Option<PathBuf> {
        match &self.def.source {
            ModelSource::Onnx(path) => Some(path.clone()),
            ModelSource::Python(model) => Some(model.model_py.clone()),
            ModelSource::Sim(_) => None,
        }
    }

    /// K: the cores each instance spans.
    #[getter]
    fn cores_per_instance(&self) -> usize {
        self.def.cores_per_instance
    }

    /// Each instance's process cores, in replica order: `[(0,), (1,)]`.
    #[getter]
    fn instances<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        self.handle()?.instances().iter().map(|span| PyTuple::new(py, span.cores())).collect()
    }

    /// `(name, dtype, shape)` of each input; `None` marks a dimension of any size.
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        spec_tuples(py, self.handle()?.inputs())
    }

    /// `(name, dtype, shape)` of each output.
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        spec_tuples(py, self.handle()?.outputs())
    }

    /// Calls, failures, latency percentiles, and per instance its executions since the load
    /// and the calls queued or running on it now.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let model = self.handle()?;
        let stats = model.stats();
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let dict = PyDict::new(py);
        dict.set_item("requests", stats.requests)?;
        dict.set_item("failures", stats.failures)?;
        dict.set_item("executions", stats.executions)?;
        dict.set_item("p50_ms", ms(stats.p50))?;
        dict.set_item("p90_ms", ms(stats.p90))?;
        dict.set_item("p99_ms", ms(stats.p99))?;
        dict.set_item("queue_ms", ms(stats.queue_time))?;
        dict.set_item("compute_ms", ms(stats.compute_time))?;
        let instances = stats
            .instances
            .iter()
            .map(|i| {
                let instance = PyDict::new(py);
                instance.set_item("cores", i.cores.cores().collect::<Vec<_>>())?;
                instance.set_item("executions", i.executions)?;
                instance.set_item("in_flight", i.in_flight)?;
                Ok(instance)
            })
            .collect::<PyResult<Vec<_>>>()?;
        dict.set_item("instances", instances)?;
        Ok(dict)
    }

    /// Unloads the model: accepted calls complete first; later calls raise
    /// `ModelUnloadedError`. Unloading twice does nothing.
    fn unload(&self, py: Python<'_>) -> PyResult<()> {
        process::check_owner(self.owner)?;
        let taken = sync::write(&self.handle).take();
        if taken.is_some() {
            let runtime = process::runtime()?;
            py.detach(|| runtime.unload(&self.def.name)).map_err(errors::load)?;
        }
        Ok(())
    }

    /// Moves the model to a placement context (`set_neuron_cores`, `set_multicore`).
    fn _move(&self, py: Python<'_>, context: Context) -> PyResult<()> {
        let runtime = process::runtime()?;
        self.handle()?;
        let placement = process::placement(runtime, context)?;
        let def = ModelDef { placement: Some(placement), ..self.def.clone() };
        let replacement = py.detach(|| runtime.replace(def)).map_err(errors::load)?;
        *sync::write(&self.handle) = Some(replacement.model.clone());
        // The old instances drain (accepted calls complete) without holding the GIL.
        py.detach(move || drop(replacement));
        Ok(())
    }

    /// Loads another copy of this model, placed by `context` (`DataParallel`'s replicas).
    fn _copy(&self, py: Python<'_>, context: Context) -> PyResult<Model> {
        let runtime = process::runtime()?;
        process::check_owner(self.owner)?;
        let placement = process::placement(runtime, context)?;
        let base = self.def.name.split('#').next().unwrap_or(&self.def.name).to_owned();
        load_unique(py, runtime, ModelDef { name: base, placement: Some(placement), ..self.def.clone() })
    }

    fn __repr__(&self) -> String {
        let instances = match self.handle() {
            Ok(model) => {
                let spans: Vec<String> = model
                    .instances()
                    .iter()
                    .map(|span| {
                        let cores: Vec<String> = span.cores().map(|c| c.to_string()).collect();
                        if cores.len() == 1 { format!("({},)", cores[0]) } else { format!("({})", cores.join(", ")) }
                    })
                    .collect();
                format!("instances=[{}]", spans.join(", "))
            }
            Err(_) => "unloaded".to_owned(),
        };
        format!("Model({:?}, {instances})", self.def.name)
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        let Some(handle) = sync::rwlock_mut(&mut self.handle).take() else { return };
        if self.owner != std::process::id() {
            // A forked child: the workers behind this handle do not exist here (see `process`).
            std::mem::forget(handle);
            return;
        }
        drop(handle);
        if let Some(runtime) = process::owned_runtime() {
            Python::attach(|py| py.detach(|| runtime.unload(&self.def.name))).ok();
        }
    }
}
