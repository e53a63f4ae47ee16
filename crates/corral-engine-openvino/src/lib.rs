//! OpenVINO as a corral engine: its C API (`libopenvino_c.so` and the plugins beside it)
//! loaded at run time from the `openvino` wheel that `./scripts/setup` installs, through
//! bindings of our own (`ffi.rs` says why).
//!
//! The library is found as ONNX Runtime's is: [`LIB_ENV`] (the file, or its folder), then
//! `openvino/libs/libopenvino_c.so.*` in `python3`'s import path, then the project's `.venv`.
//! A library of another version than [`VERSION`], or without its CPU plugin, counts as
//! missing, with that reason.
//!
//! It reads ONNX files and OpenVINO IR (`model.xml` with its `model.bin` beside it). Each
//! instance compiles the model for the CPU with one inference thread and one stream, f32
//! precision (the CPU plugin would pick bf16 on CPUs that have it), and OpenVINO's own
//! pinning off: the compile runs on a thread pinned to the instance's core, so every thread
//! OpenVINO starts for it inherits that core, and a synchronous inference runs on the
//! calling thread, the instance's worker, which the runtime pinned there. OpenVINO cannot
//! bind a stream's pool to chosen cores (openvinotoolkit/openvino#22198), so an instance of
//! K > 1 cores is refused with that reason rather than run unconfined. Inputs are read in
//! place (tensors over corral's buffers); outputs are copied once out of the request's.
//! BYTES is refused at load, naming the tensor: corral's OpenVINO path carries no strings.

mod ffi;

use std::{
    ffi::{CString, c_void},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

use corral_engine::{
    DataType, EngineError, ModelSource, Prepared, Session, SessionPlacement, Sessions, Tensor, TensorData, TensorSpec,
};
use ffi::{Api, Handle, element};

/// Names the library (`libopenvino_c.so.*`, or the folder holding it); wins over every
/// other place.
pub const LIB_ENV: &str = "OPENVINO_LIB_PATH";

/// The version `./scripts/setup` installs (`openvino==2026.4.1`).
pub const VERSION: &str = "2026.4.1";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OvLoadError {
    #[error(
        "{LIB_ENV}={0} names no libopenvino_c.so\nhint: point it at the openvino wheel's openvino/libs, or unset it"
    )]
    BadEnv(String),
    #[error(
        "OpenVINO was not found in {LIB_ENV}, an installed openvino Python package, or this project's .venv\nhint: run ./scripts/setup, or pip install openvino=={VERSION}"
    )]
    NotFound,
    #[error("cannot load OpenVINO from {}: {reason}", path.display())]
    Load { path: PathBuf, reason: String },
    #[error("OpenVINO at {} is version {found}; corral needs {VERSION}\nhint: pip install openvino=={VERSION}", path.display())]
    Version { path: PathBuf, found: String },
    #[error("OpenVINO at {} has no CPU plugin (libopenvino_intel_cpu_plugin.so beside it)\nhint: pip install openvino=={VERSION}", path.display())]
    NoCpu { path: PathBuf },
}

/// Where the library is, by the rules in the module docs.
pub fn find_library(lookup: impl Fn(&str) -> Option<String>) -> Result<PathBuf, OvLoadError> {
    const NAME: &str = "libopenvino_c.so";
    if let Some(value) = lookup(LIB_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(&value);
        let in_dir = || {
            let mut libs: Vec<PathBuf> = std::fs::read_dir(&path).ok()?.filter_map(|e| Some(e.ok()?.path())).collect();
            libs.retain(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(NAME)));
            libs.sort();
            libs.pop()
        };
        let found = if path.is_dir() { in_dir() } else { path.is_file().then(|| path.clone()) };
        return found.ok_or(OvLoadError::BadEnv(value));
    }
    corral_engine::library::find_in_python("openvino", "libs", NAME).ok_or(OvLoadError::NotFound)
}

/// The loaded library and the process's one OpenVINO core (thread-safe, as OpenVINO's
/// `ov::Core` is), which live as long as the process.
struct Loaded {
    api: Api,
    core: Handle,
}

// SAFETY: `Api` is function pointers and the library handle; the core is OpenVINO's
// `ov::Core`, whose methods may be called from any thread at once.
unsafe impl Send for Loaded {}
// SAFETY: as above.
unsafe impl Sync for Loaded {}

static LOADED: OnceLock<Result<(PathBuf, Loaded), OvLoadError>> = OnceLock::new();

fn loaded() -> &'static Loaded {
    match LOADED.get() {
        Some(Ok((_, loaded))) => loaded,
        _ => unreachable!("an OpenVinoEngine exists only once the library loaded"),
    }
}

fn load_library(path: &Path) -> Result<Loaded, OvLoadError> {
    let load_error = |reason: String| OvLoadError::Load { path: path.to_owned(), reason };
    // SAFETY: the file was found as OpenVINO's C library (by name, in its wheel's folder,
    // or where the user pointed); its functions have the signatures `ffi` spells out.
    let api = unsafe { Api::load(path) }.map_err(load_error)?;
    let found = api.version().map_err(load_error)?;
    if !found.starts_with(VERSION) {
        return Err(OvLoadError::Version { path: path.to_owned(), found });
    }
    let mut core: Handle = std::ptr::null_mut();
    // SAFETY: `core` receives a new core, kept for the life of the process.
    api.check(unsafe { (api.core_create)(&mut core) }, "ov_core_create").map_err(load_error)?;
    let mut devices = ffi::Devices { devices: std::ptr::null_mut(), size: 0 };
    // SAFETY: `core` is live; `devices` is filled, read, then freed once.
    api.check(unsafe { (api.available_devices)(core, &mut devices) }, "available devices").map_err(load_error)?;
    let names: Vec<String> = (0..devices.size)
        // SAFETY: `devices` holds `size` C strings.
        .filter_map(|i| unsafe { ffi::text(*devices.devices.add(i)) })
        .collect();
    // SAFETY: filled by the call above.
    unsafe { (api.available_devices_free)(&mut devices) };
    if !names.iter().any(|n| n == "CPU") {
        return Err(OvLoadError::NoCpu { path: path.to_owned() });
    }
    Ok(Loaded { api, core })
}

/// OpenVINO, loaded once per process.
#[derive(Debug)]
pub struct OpenVinoEngine {
    library: PathBuf,
}

impl OpenVinoEngine {
    /// Finds and loads the library (once per process; later calls return the same result).
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> Result<OpenVinoEngine, OvLoadError> {
        let loaded = LOADED.get_or_init(|| {
            let path = find_library(lookup)?;
            Ok((path.clone(), load_library(&path)?))
        });
        match loaded {
            Ok((library, _)) => Ok(OpenVinoEngine { library: library.clone() }),
            Err(error) => Err(error.clone()),
        }
    }

    /// The library in use.
    pub fn library(&self) -> &Path {
        &self.library
    }
}

impl corral_engine::Engine for OpenVinoEngine {
    fn name(&self) -> &'static str {
        "openvino"
    }

    fn prepare(&self, source: &ModelSource) -> Result<Arc<Prepared>, EngineError> {
        let ModelSource::Onnx(path) = source else {
            return Err(EngineError::Unsupported { engine: "openvino", reason: "not an ONNX or IR model".to_owned() });
        };
        let model = OvModel::read(path)?;
        let (inputs, outputs) = (model.inputs.clone(), model.outputs.clone());
        Ok(Arc::new(Prepared::new(inputs, outputs, model)))
    }
}

/// A model as OpenVINO read it (not compiled: each instance compiles its own, on its core).
struct OvModel {
    path: PathBuf,
    model: Handle,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

/// One compile at a time in the process: compiles read their model, and the CPU plugin's
/// first one sets it up; compiles are rare (an instance's start).
static COMPILING: Mutex<()> = Mutex::new(());

// SAFETY: `model` is OpenVINO's `ov::Model`, only read (by compiles, one at a time) and
// freed once, on drop.
unsafe impl Send for OvModel {}
// SAFETY: as above.
unsafe impl Sync for OvModel {}

impl Drop for OvModel {
    fn drop(&mut self) {
        // SAFETY: read in `OvModel::read`, freed once; compiled models hold their own copy.
        unsafe { (loaded().api.model_free)(self.model) };
    }
}

impl OvModel {
    /// Reads an ONNX file, or IR (`.xml` with its `.bin` beside it), and its signature.
    fn read(path: &Path) -> Result<OvModel, EngineError> {
        let load_error = |reason: String| EngineError::Load { path: path.to_owned(), reason };
        let Loaded { api, core } = loaded();
        let weights = path.with_extension("bin");
        let is_ir = path.extension().is_some_and(|e| e == "xml");
        if is_ir && !weights.is_file() {
            return Err(load_error(format!("its weights {} are missing", weights.display())));
        }
        let c_path = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).map_err(|e| load_error(e.to_string()));
        let xml = c_path(path)?;
        let bin = if is_ir { Some(c_path(&weights)?) } else { None };
        let mut model: Handle = std::ptr::null_mut();
        // SAFETY: the core is live; the paths are C strings; `model` receives the model.
        let status = unsafe {
            (api.read_model)(*core, xml.as_ptr(), bin.as_ref().map_or(std::ptr::null(), |b| b.as_ptr()), &mut model)
        };
        api.check(status, "OpenVINO cannot read it").map_err(load_error)?;
        let mut read = OvModel { path: path.to_owned(), model, inputs: Vec::new(), outputs: Vec::new() };
        read.inputs = read.ports(api.inputs_size, api.input_port).map_err(load_error)?;
        read.outputs = read.ports(api.outputs_size, api.output_port).map_err(load_error)?;
        Ok(read)
    }

    /// The model's inputs or outputs as corral declares tensors.
    fn ports(
        &self,
        size: unsafe extern "C" fn(Handle, *mut usize) -> ffi::Status,
        port: unsafe extern "C" fn(Handle, usize, *mut Handle) -> ffi::Status,
    ) -> Result<Vec<TensorSpec>, String> {
        let api = &loaded().api;
        let mut count = 0;
        // SAFETY: the model is live.
        api.check(unsafe { size(self.model, &mut count) }, "ports")?;
        (0..count)
            .map(|index| {
                let mut handle: Handle = std::ptr::null_mut();
                // SAFETY: `index` is below the count the model reported.
                api.check(unsafe { port(self.model, index, &mut handle) }, "port")?;
                // SAFETY: `handle` is the port just made; freed once after it is read.
                let spec = unsafe { describe(api, handle) };
                // SAFETY: as above.
                unsafe { (api.port_free)(handle) };
                spec
            })
            .collect()
    }
}

/// A port's name, datatype and shape (-1 for a dimension not fixed).
///
/// # Safety
///
/// `port` is a live `ov_output_const_port_t`.
unsafe fn describe(api: &Api, port: Handle) -> Result<TensorSpec, String> {
    let mut name: *mut std::ffi::c_char = std::ptr::null_mut();
    // SAFETY: as the caller promised; `name` is freed below with OpenVINO's `ov_free`.
    api.check(unsafe { (api.port_name)(port, &mut name) }, "a tensor's name")?;
    // SAFETY: a C string from the call above, freed once.
    let text = unsafe { ffi::text(name) }.unwrap_or_default();
    // SAFETY: as above.
    unsafe { (api.free)(name) };
    let mut kind = 0;
    // SAFETY: as the caller promised.
    api.check(unsafe { (api.port_element_type)(port, &mut kind) }, "a tensor's type")?;
    let datatype = match kind {
        element::STRING => {
            return Err(format!(
                "`{text}` holds strings (BYTES), which corral's OpenVINO engine does not carry; run the model with onnxruntime"
            ));
        }
        other => datatype(other)
            .ok_or_else(|| format!("`{text}` has OpenVINO element type {other}, which corral does not carry"))?,
    };
    let mut shape = ffi::PartialShape { rank: ffi::Dimension { min: 0, max: 0 }, dims: std::ptr::null_mut() };
    // SAFETY: as the caller promised; the shape is freed below.
    api.check(unsafe { (api.port_partial_shape)(port, &mut shape) }, "a tensor's shape")?;
    let rank = shape.rank;
    let dims: Vec<i64> = if rank.min == rank.max && rank.min >= 0 && !shape.dims.is_null() {
        // SAFETY: a static rank: `dims` holds `rank` dimensions.
        let dims = unsafe { std::slice::from_raw_parts(shape.dims, rank.min as usize) };
        dims.iter().map(|d| if d.min == d.max { d.min } else { -1 }).collect()
    } else {
        Vec::new()
    };
    // SAFETY: filled above, freed once.
    unsafe { (api.partial_shape_free)(&mut shape) };
    if rank.min != rank.max {
        return Err(format!("`{text}` has no fixed rank, which corral needs"));
    }
    Ok(TensorSpec::new(text, datatype, dims))
}

fn datatype(kind: i32) -> Option<DataType> {
    Some(match kind {
        element::BOOLEAN => DataType::Bool,
        element::U8 => DataType::U8,
        element::U16 => DataType::U16,
        element::U32 => DataType::U32,
        element::U64 => DataType::U64,
        element::I8 => DataType::I8,
        element::I16 => DataType::I16,
        element::I32 => DataType::I32,
        element::I64 => DataType::I64,
        element::F16 => DataType::F16,
        element::BF16 => DataType::BF16,
        element::F32 => DataType::F32,
        element::F64 => DataType::F64,
        _ => return None,
    })
}

fn element_type(datatype: DataType) -> Option<i32> {
    Some(match datatype {
        DataType::Bool => element::BOOLEAN,
        DataType::U8 => element::U8,
        DataType::U16 => element::U16,
        DataType::U32 => element::U32,
        DataType::U64 => element::U64,
        DataType::I8 => element::I8,
        DataType::I16 => element::I16,
        DataType::I32 => element::I32,
        DataType::I64 => element::I64,
        DataType::F16 => element::F16,
        DataType::BF16 => element::BF16,
        DataType::F32 => element::F32,
        DataType::F64 => element::F64,
        DataType::Bytes => return None,
    })
}

/// Why an instance of more than one core is refused (see the module docs).
pub const WIDE_REFUSED: &str = "OpenVINO cannot keep its thread pool on an instance's own cores when an instance has more than one (openvinotoolkit/openvino#22198); run instances of 1 core, or this model on onnxruntime";

impl Sessions for OvModel {
    fn session(&self, placement: &SessionPlacement) -> Result<Box<dyn Session>, EngineError> {
        let failed = |reason: String| EngineError::Session(format!("{}: {reason}", self.path.display()));
        if placement.cores() > 1 {
            return Err(failed(WIDE_REFUSED.to_owned()));
        }
        let cpus: Vec<usize> = placement.core_cpus.concat();
        let _compiling = corral_cores::sync::lock(&COMPILING);
        // Compiled on a thread pinned to the instance's CPUs: what OpenVINO starts for the
        // compiled model (its stream's threads) inherits them.
        let made = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    corral_cores::pin_thread(&cpus)?;
                    self.compile()
                })
                .join()
                .unwrap_or_else(|_| Err("the compile panicked".to_owned()))
        });
        let Compiled(compiled, request) = made.map_err(failed)?;
        Ok(Box::new(OvSession { compiled, request, inputs: self.inputs.clone(), outputs: self.outputs.clone() }))
    }
}

/// A compiled model's handle and its infer request's, moved out of the compiling thread.
struct Compiled(Handle, Handle);
// SAFETY: OpenVINO's compiled models and infer requests may be used from another thread
// than the one that made them (one thread at a time, for a request).
unsafe impl Send for Compiled {}

impl OvModel {
    /// Compiles for the CPU, one thread and one stream, f32, OpenVINO's pinning off; and makes
    /// the request.
    fn compile(&self) -> Result<Compiled, String> {
        let Loaded { api, core } = loaded();
        let property = |text: &str| CString::new(text).expect("no NUL");
        let keys = ["INFERENCE_NUM_THREADS", "NUM_STREAMS", "ENABLE_CPU_PINNING", "INFERENCE_PRECISION_HINT"];
        let values = ["1", "1", "NO", "f32"];
        let (keys, values): (Vec<CString>, Vec<CString>) =
            (keys.iter().map(|k| property(k)).collect(), values.iter().map(|v| property(v)).collect());
        let device = property("CPU");
        let mut compiled: Handle = std::ptr::null_mut();
        // SAFETY: the core and model are live; 8 property arguments follow (4 pairs of C
        // strings, alive for the call), as `property_args_size` says.
        let status = unsafe {
            (api.compile_model)(
                *core,
                self.model,
                device.as_ptr(),
                8,
                &mut compiled,
                keys[0].as_ptr(),
                values[0].as_ptr(),
                keys[1].as_ptr(),
                values[1].as_ptr(),
                keys[2].as_ptr(),
                values[2].as_ptr(),
                keys[3].as_ptr(),
                values[3].as_ptr(),
            )
        };
        api.check(status, "compiling for the CPU")?;
        let mut request: Handle = std::ptr::null_mut();
        // SAFETY: `compiled` was just made; `request` receives a request of it.
        if let Err(error) = api.check(unsafe { (api.create_request)(compiled, &mut request) }, "an infer request") {
            // SAFETY: made above, freed once.
            unsafe { (api.compiled_free)(compiled) };
            return Err(error);
        }
        Ok(Compiled(compiled, request))
    }
}

/// One instance: its compiled model and infer request.
struct OvSession {
    compiled: Handle,
    request: Handle,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

// SAFETY: the request is used by one thread at a time (`Session` is called so), and a
// compiled model's request may run on any thread.
unsafe impl Send for OvSession {}

impl Drop for OvSession {
    fn drop(&mut self) {
        let api = &loaded().api;
        // SAFETY: made in `compile`, freed once, the request before its compiled model.
        unsafe {
            (api.request_free)(self.request);
            (api.compiled_free)(self.compiled);
        }
    }
}

impl Session for OvSession {
    fn run(&mut self, inputs: &[Tensor], _switched: bool) -> Result<Vec<Tensor>, EngineError> {
        let api = &loaded().api;
        let run = |e: String| EngineError::Run(e);
        // Each input as an OpenVINO tensor over corral's own buffer (no copy).
        let mut made: Vec<Handle> = Vec::with_capacity(inputs.len());
        let result: Result<Vec<Tensor>, String> = (|| {
            for input in inputs {
                let index = self
                    .inputs
                    .iter()
                    .position(|s| s.name == input.name)
                    .ok_or_else(|| format!("no input `{}`", input.name))?;
                let kind = element_type(input.datatype()).ok_or_else(|| format!("input `{}` is BYTES", input.name))?;
                let bytes =
                    input.data.wire_bytes().ok_or_else(|| format!("input `{}`: elements not in place", input.name))?;
                let mut dims: Vec<i64> = input.shape.iter().map(|&d| d as i64).collect();
                let shape = ffi::Shape { rank: dims.len() as i64, dims: dims.as_mut_ptr() };
                let mut tensor: Handle = std::ptr::null_mut();
                // SAFETY: `bytes` holds the tensor's elements for its shape and type, alive and
                // unwritten until this call returns (OpenVINO only reads an input); `dims` is
                // read during the call (the tensor keeps its own copy of the shape).
                let status = unsafe { (api.tensor_from_host)(kind, shape, bytes.as_ptr() as *mut c_void, &mut tensor) };
                api.check(status, &format!("input `{}`", input.name))?;
                made.push(tensor);
                // SAFETY: the request and tensor are live; `index` is one of the model's inputs.
                api.check(unsafe { (api.set_input)(self.request, index, tensor) }, &format!("input `{}`", input.name))?;
            }
            // SAFETY: every input is set; the request runs on this (the instance's) thread.
            api.check(unsafe { (api.infer)(self.request) }, "inference")?;
            self.outputs.iter().enumerate().map(|(index, spec)| self.output(api, index, spec)).collect()
        })();
        for tensor in made {
            // SAFETY: made above, freed once (the request keeps what it still needs).
            unsafe { (api.tensor_free)(tensor) };
        }
        result.map_err(run)
    }
}

impl OvSession {
    /// Output `index`, copied once out of the request's buffer.
    fn output(&self, api: &Api, index: usize, spec: &TensorSpec) -> Result<Tensor, String> {
        let what = format!("output `{}`", spec.name);
        let mut tensor: Handle = std::ptr::null_mut();
        // SAFETY: the request is live and has run; `index` is one of the model's outputs.
        api.check(unsafe { (api.get_output)(self.request, index, &mut tensor) }, &what)?;
        // SAFETY: `tensor` was just returned; read, then freed once.
        let read = unsafe { read_tensor(api, tensor, spec.datatype) }.map_err(|e| format!("{what}: {e}"));
        // SAFETY: as above.
        unsafe { (api.tensor_free)(tensor) };
        let (shape, data) = read?;
        Ok(Tensor::new(spec.name.clone(), shape, data))
    }
}

/// A tensor's shape and elements (copied).
///
/// # Safety
///
/// `tensor` is a live `ov_tensor_t`.
unsafe fn read_tensor(api: &Api, tensor: Handle, datatype: DataType) -> Result<(Vec<usize>, TensorData), String> {
    let mut shape = ffi::Shape { rank: 0, dims: std::ptr::null_mut() };
    // SAFETY: as the caller promised; the shape is freed below.
    api.check(unsafe { (api.tensor_shape)(tensor, &mut shape) }, "shape")?;
    let dims = if shape.dims.is_null() {
        Vec::new()
    } else {
        // SAFETY: the shape holds `rank` dimensions.
        unsafe { std::slice::from_raw_parts(shape.dims, shape.rank.max(0) as usize) }.to_vec()
    };
    // SAFETY: filled above, freed once.
    unsafe { (api.shape_free)(&mut shape) };
    let mut kind = 0;
    // SAFETY: as the caller promised.
    api.check(unsafe { (api.tensor_element_type)(tensor, &mut kind) }, "type")?;
    if element_type(datatype) != Some(kind) {
        return Err(format!("OpenVINO element type {kind}, not {datatype}"));
    }
    let (mut size, mut data) = (0usize, std::ptr::null_mut::<c_void>());
    // SAFETY: as the caller promised.
    api.check(unsafe { (api.tensor_byte_size)(tensor, &mut size) }, "size")?;
    let bytes: &[u8] = if size == 0 {
        &[]
    } else {
        // SAFETY: as the caller promised.
        api.check(unsafe { (api.tensor_data)(tensor, &mut data) }, "data")?;
        // SAFETY: the tensor's `size` bytes, alive while the tensor is (this call).
        unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) }
    };
    let data = TensorData::from_le_bytes(datatype, bytes).ok_or("not whole elements")?;
    Ok((dims.iter().map(|&d| d.max(0) as usize).collect(), data))
}
