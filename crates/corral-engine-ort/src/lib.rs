//! The ONNX Runtime backend, through `ort` with `load-dynamic`: the shared library comes
//! from the PyPI `onnxruntime` wheel (its `onnxruntime/capi/libonnxruntime.so.*`), never from
//! a download at build time.
//!
//! [`find_library`] looks, in order, at `ORT_DYLIB_PATH`, an installed `onnxruntime` Python
//! package (`python3`'s import path, found without importing it), and the project's own
//! `.venv` (searched upwards from the executable and the working directory), which
//! `./scripts/setup` fills.
//!
//! Weights once per model version: every one-core instance of a prepared model (replicas,
//! autopilot growth, cpuset moves) runs on ONE session of one
//! intra-op thread, shared, so its weights and prepacked weights are held once however many
//! instances run. With one intra-op thread ONNX Runtime starts no thread of its own: each
//! call computes on the calling thread, the instance's worker, pinned by the runtime.
//! ONNX Runtime's `Run` may be called from several threads at once on one session (its
//! guarantee, microsoft/onnxruntime#19301; Triton's onnxruntime backend offers the same
//! sharing as `share_session_between_instances`); `ort`'s safe `run` takes `&mut self`
//! regardless, so calls go through the C API's `Run` ([`run`]). `CORRAL_ORT_SHARED_SESSION=0`
//! gives each instance its own session instead (what `bench/weights.sh` compares with); `1`
//! or unset is the default; any other value fails the load saying so.
//!
//! A K-core instance (K > 1) gets a session of its own with K intra-op threads: the calling
//! worker thread (already pinned to the instance's first core by the runtime) plus K-1
//! threads that ONNX Runtime pins to the other cores' CPUs (`session.intra_op_thread_affinities`);
//! its prepacked weights come from the model's one container (`PrepackedWeights`), shared
//! with every other session of the model. Spinning is off so an idle replica leaves its core
//! to nobody but itself, and never burns a neighbour's. A reload prepares a new model, which
//! shares nothing with the version it replaces.
//!
//! BYTES tensors are ONNX string tensors, which are byte strings with lengths: elements go in
//! and come out through the C API's explicit-length functions
//! (`GetResizedStringTensorElementBuffer`, `GetStringTensorElementLength` and
//! `GetStringTensorElement`), so any bytes cross, NULs and non-UTF-8 included, exactly as
//! Triton's string examples send them; each is copied once each way, between its wire form
//! (where a request's body holds it, where an answer's bytes go) and ONNX Runtime's string.

use std::{
    ffi::{CStr, CString},
    path::{Path, PathBuf},
    ptr::NonNull,
    sync::{Arc, OnceLock},
};

use corral_engine::{
    DataType, Element, EngineError, ModelSource, Prepared, Session, SessionPlacement, Sessions, SharedData, Strings,
    StringsView, Tensor, TensorData, TensorSpec, TensorView, bf16, f16,
};
use ort::{
    AsPointer,
    session::{
        Session as OrtSession, SessionInputValue,
        builder::{GraphOptimizationLevel, PrepackedWeights},
    },
    value::{DynValue, Tensor as OrtTensor, TensorElementType, TensorRef, ValueType},
};

/// Names the library explicitly; wins over every other place.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// `0`: each one-core instance gets a session of its own rather than the model's shared one.
pub const SHARED_SESSION_ENV: &str = "CORRAL_ORT_SHARED_SESSION";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OrtLoadError {
    #[error("{DYLIB_ENV}={0} does not name a file\nhint: point it at libonnxruntime.so.1.31.x, or unset it")]
    BadEnv(String),
    #[error(
        "ONNX Runtime was not found in {DYLIB_ENV}, an installed onnxruntime Python package, or this project's .venv\nhint: run ./scripts/setup, or pip install onnxruntime==1.31.*"
    )]
    NotFound,
    #[error("cannot load ONNX Runtime from {}: {reason}", path.display())]
    Load { path: PathBuf, reason: String },
}

/// Where the library is, by the rules in the module docs.
pub fn find_library(lookup: impl Fn(&str) -> Option<String>) -> Result<PathBuf, OrtLoadError> {
    if let Some(value) = lookup(DYLIB_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(&value);
        return if path.is_file() { Ok(path) } else { Err(OrtLoadError::BadEnv(value)) };
    }
    corral_engine::library::find_in_python("onnxruntime", "capi", "libonnxruntime.so").ok_or(OrtLoadError::NotFound)
}

pub use corral_engine::library::project_site_packages;

/// ONNX Runtime, loaded once per process.
#[derive(Debug)]
pub struct OrtEngine {
    library: PathBuf,
}

/// The library's path and the one ONNX Runtime environment this process may have, which
/// must outlive every session: it lives as long as the process.
static LOADED: OnceLock<Result<(PathBuf, ort::environment::Environment), OrtLoadError>> = OnceLock::new();

fn environment() -> &'static ort::environment::Environment {
    match LOADED.get() {
        Some(Ok((_, environment))) => environment,
        _ => unreachable!("an OrtEngine exists only once the environment was built"),
    }
}

impl OrtEngine {
    /// Finds and loads the library (once per process; later calls return the same result).
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> Result<OrtEngine, OrtLoadError> {
        let loaded = LOADED.get_or_init(|| {
            let path = find_library(lookup)?;
            let load_error = |reason: String| OrtLoadError::Load { path: path.clone(), reason };
            let environment = ort::init_from(&path).map_err(|e| load_error(e.to_string()))?;
            let environment = environment.with_name("corral").build().map_err(|e| load_error(e.to_string()))?;
            Ok((path, environment))
        });
        match loaded {
            Ok((library, _)) => Ok(OrtEngine { library: library.clone() }),
            Err(error) => Err(error.clone()),
        }
    }

    /// The library in use.
    pub fn library(&self) -> &Path {
        &self.library
    }
}

impl corral_engine::Engine for OrtEngine {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }

    fn prepare(&self, source: &ModelSource) -> Result<Arc<Prepared>, EngineError> {
        let ModelSource::Onnx(path) = source else {
            return Err(EngineError::Unsupported { engine: "onnxruntime", reason: "not an ONNX model".to_owned() });
        };
        let load_error = |reason: String| EngineError::Load { path: path.clone(), reason };
        let bytes = std::fs::read(path).map_err(|e| load_error(e.to_string()))?;
        let prepacked = PrepackedWeights::new();
        // The session of one thread reads the signature, proves the model loads, and is the
        // one every one-core instance runs on.
        let single =
            build_session(&bytes, &SessionPlacement { core_cpus: vec![Vec::new()] }, &prepacked).map_err(load_error)?;
        let inputs = signature(single.inputs().iter().map(|o| (o.name(), o.dtype())), path)?;
        let outputs = signature(single.outputs().iter().map(|o| (o.name(), o.dtype())), path)?;
        let (input_names, output_names) = (names(&inputs, path)?, names(&outputs, path)?);
        let shared = match std::env::var(SHARED_SESSION_ENV).as_deref().map(str::trim) {
            Err(_) | Ok("" | "1") => true,
            Ok("0") => false,
            Ok(other) => {
                return Err(load_error(format!(
                    "{SHARED_SESSION_ENV}={other} is not valid\nhint: use 0 (a session per instance) or 1 (one session for a model's one-core instances, the default)"
                )));
            }
        };
        let model = OrtModel {
            path: path.clone(),
            bytes,
            prepacked,
            single: shared.then(|| Arc::new(single)),
            outputs: outputs.clone(),
            inputs: inputs.clone(),
            input_names: Arc::new(input_names),
            output_names: Arc::new(output_names),
        };
        Ok(Arc::new(Prepared::new(inputs, outputs, model)))
    }
}

fn signature<'a>(
    outlets: impl Iterator<Item = (&'a str, &'a ValueType)>,
    path: &Path,
) -> Result<Vec<TensorSpec>, EngineError> {
    outlets
        .map(|(name, dtype)| match dtype {
            ValueType::Tensor { ty, shape, .. } => match datatype(*ty) {
                Some(datatype) => Ok(TensorSpec::new(name, datatype, shape.to_vec())),
                None => Err(EngineError::Load {
                    path: path.to_owned(),
                    reason: format!("`{name}` has element type {ty:?}, which corral does not carry yet"),
                }),
            },
            other => Err(EngineError::Load {
                path: path.to_owned(),
                reason: format!("`{name}` is a {other:?}; corral carries tensors only"),
            }),
        })
        .collect()
}

fn datatype(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::U8,
        TensorElementType::Uint16 => DataType::U16,
        TensorElementType::Uint32 => DataType::U32,
        TensorElementType::Uint64 => DataType::U64,
        TensorElementType::Int8 => DataType::I8,
        TensorElementType::Int16 => DataType::I16,
        TensorElementType::Int32 => DataType::I32,
        TensorElementType::Int64 => DataType::I64,
        TensorElementType::Float16 => DataType::F16,
        TensorElementType::Bfloat16 => DataType::BF16,
        TensorElementType::Float32 => DataType::F32,
        TensorElementType::Float64 => DataType::F64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

/// ONNX Runtime's affinity syntax: logical processors are 1-based, `;` between threads.
fn affinities(placement: &SessionPlacement) -> Option<String> {
    let others = &placement.core_cpus[1.min(placement.core_cpus.len())..];
    if others.is_empty() || others.iter().any(Vec::is_empty) {
        return None;
    }
    let per_thread: Vec<String> =
        others.iter().map(|cpus| cpus.iter().map(|c| (c + 1).to_string()).collect::<Vec<_>>().join(",")).collect();
    Some(per_thread.join(";"))
}

/// Tensors' names as C strings, for `Run`, made once per model rather than per call.
fn names(specs: &[TensorSpec], path: &Path) -> Result<Vec<CString>, EngineError> {
    specs
        .iter()
        .map(|spec| {
            CString::new(spec.name.as_str()).map_err(|_| EngineError::Load {
                path: path.to_owned(),
                reason: format!("`{}` has a NUL in its name", spec.name.escape_debug()),
            })
        })
        .collect()
}

fn build_session(
    bytes: &[u8],
    placement: &SessionPlacement,
    prepacked: &PrepackedWeights,
) -> Result<OrtSession, String> {
    let threads = placement.cores().max(1);
    let text = |e: ort::Error<_>| e.to_string();
    let mut builder = OrtSession::builder(environment()).map_err(|e| e.to_string())?;
    builder = builder.with_optimization_level(GraphOptimizationLevel::Level3).map_err(text)?;
    builder = builder.with_intra_threads(threads).map_err(text)?;
    builder = builder.with_inter_threads(1).map_err(text)?;
    builder = builder.with_intra_op_spinning(false).map_err(text)?;
    builder = builder.with_prepacked_weights(prepacked).map_err(text)?;
    if let Some(affinity) = affinities(placement) {
        builder = builder.with_config_entry("session.intra_op_thread_affinities", affinity).map_err(text)?;
    }
    builder.commit_from_memory(bytes).map_err(|e| e.to_string())
}

/// A model parsed by ONNX Runtime: the session its one-core instances share, and what a
/// session of its own (K > 1 cores) is built from.
struct OrtModel {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Shared by every session of the model.
    prepacked: PrepackedWeights,
    /// One intra-op thread, no affinity: every one-core instance's session (none when
    /// `CORRAL_ORT_SHARED_SESSION=0`).
    single: Option<Arc<OrtSession>>,
    /// Each session reads its outputs in this order.
    outputs: Vec<TensorSpec>,
    /// The inputs, and their names for `Run`.
    inputs: Vec<TensorSpec>,
    input_names: Arc<Vec<CString>>,
    output_names: Arc<Vec<CString>>,
}

impl Sessions for OrtModel {
    fn session(&self, placement: &SessionPlacement) -> Result<Box<dyn Session>, EngineError> {
        let session = match &self.single {
            Some(single) if placement.cores() <= 1 => single.clone(),
            _ => {
                let session = build_session(&self.bytes, placement, &self.prepacked)
                    .map_err(|reason| EngineError::Load { path: self.path.clone(), reason })?;
                Arc::new(session)
            }
        };
        Ok(Box::new(OrtInstance {
            session,
            inputs: self.inputs.clone(),
            input_names: self.input_names.clone(),
            outputs: self.outputs.clone(),
            output_names: self.output_names.clone(),
        }))
    }
}

struct OrtInstance {
    /// Shared with the model's other one-core instances and with the outputs read in place,
    /// which keep it alive.
    session: Arc<OrtSession>,
    outputs: Vec<TensorSpec>,
    inputs: Vec<TensorSpec>,
    input_names: Arc<Vec<CString>>,
    output_names: Arc<Vec<CString>>,
}

/// Runs `session` on `inputs` (names and values), giving the outputs named in `outputs`, in
/// that order, through the C API's `Run`, which ONNX Runtime allows from several threads at
/// once on one session (see the module docs).
fn run(
    session: &OrtSession,
    inputs: &[(&CStr, SessionInputValue<'_>)],
    outputs: &[CString],
) -> Result<Vec<DynValue>, EngineError> {
    let input_names: Vec<*const std::ffi::c_char> = inputs.iter().map(|(name, _)| name.as_ptr()).collect();
    let input_values: Vec<*const ort::sys::OrtValue> = inputs.iter().map(|(_, value)| value.ptr()).collect();
    let output_names: Vec<*const std::ffi::c_char> = outputs.iter().map(|name| name.as_ptr()).collect();
    let mut output_values: Vec<*mut ort::sys::OrtValue> = vec![std::ptr::null_mut(); outputs.len()];
    // SAFETY: the session is live; the names are NUL-terminated strings and the values live
    // OrtValues, which outlive the call, in arrays of the lengths given; ONNX Runtime writes
    // one new OrtValue per output name into `output_values`.
    let status = unsafe {
        (ort::api().Run)(
            session.ptr().cast_mut(),
            std::ptr::null(),
            input_names.as_ptr(),
            input_values.as_ptr(),
            input_values.len(),
            output_names.as_ptr(),
            output_names.len(),
            output_values.as_mut_ptr(),
        )
    };
    // The values made before a failure are released as they are taken.
    let values: Vec<Option<DynValue>> = output_values
        .into_iter()
        .map(|value| {
            // SAFETY: a non-null pointer is an OrtValue that `Run` made and the caller now
            // owns, its tensor allocated by the session's allocator.
            NonNull::new(value).map(|value| unsafe { DynValue::from_ptr(value, Some(session.allocator())) })
        })
        .collect();
    // SAFETY: the status was just returned by the API.
    unsafe { checked(status, "Run") }?;
    values
        .into_iter()
        .zip(outputs)
        .map(|(value, name)| value.ok_or_else(|| EngineError::Run(format!("no output `{}`", name.to_string_lossy()))))
        .collect()
}

fn view<'a, T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static>(
    shape: &[usize],
    data: &'a [T],
) -> Result<SessionInputValue<'a>, EngineError> {
    TensorRef::from_array_view((shape.to_vec(), data)).map(Into::into).map_err(|e| EngineError::Run(e.to_string()))
}

/// `status` (an ONNX Runtime C API call's result) as this call's error.
///
/// # Safety
/// `status` must come from an ONNX Runtime API call, and is consumed.
unsafe fn checked(status: ort::sys::OrtStatusPtr, what: &str) -> Result<(), EngineError> {
    // SAFETY: the caller passes a status an API call just returned; it is released here.
    unsafe { ort::Error::result_from_status(status) }.map_err(|e| EngineError::Run(format!("{what}: {e}")))
}

/// A string tensor of `data`'s elements, each written with its length, so an element may hold
/// any bytes (ONNX Runtime's `FillStringTensor`, which `ort` uses, takes C strings): each
/// element copied once, from where it arrived (its request's body) into ONNX Runtime's string.
fn strings<'a>(name: &str, shape: &[usize], data: StringsView<'_>) -> Result<SessionInputValue<'a>, EngineError> {
    let run = |e: ort::Error| EngineError::Run(format!("BYTES input `{name}`: {e}"));
    // A tensor of empty strings of the right shape, made by `ort`, then each element resized
    // and filled in place.
    let empty = vec![""; data.len()];
    let mut tensor = OrtTensor::from_string_array((shape.to_vec(), &empty[..])).map_err(run)?;
    let api = ort::api();
    for (index, element) in data.iter().enumerate() {
        let mut buffer: *mut std::ffi::c_char = std::ptr::null_mut();
        // SAFETY: `tensor` is a live string tensor of `data.len()` elements (made above, so
        // `index` is in range); ONNX Runtime allocates `element.len()` bytes for the element
        // and points `buffer` at them.
        let status =
            unsafe { (api.GetResizedStringTensorElementBuffer)(tensor.ptr_mut(), index, element.len(), &mut buffer) };
        // SAFETY: the status was just returned by the API.
        unsafe { checked(status, &format!("BYTES input `{name}`, element {index}")) }?;
        if !element.is_empty() {
            // SAFETY: `buffer` holds `element.len()` writable bytes owned by the tensor, which
            // lives until the call; the two regions cannot overlap (one is ours).
            unsafe { std::ptr::copy_nonoverlapping(element.as_ptr(), buffer.cast::<u8>(), element.len()) };
        }
    }
    Ok(tensor.into())
}

/// A string output's elements, each copied once, exactly as long as ONNX Runtime says,
/// straight into their wire form (the buffer an answer sends).
fn string_elements(name: &str, value: &DynValue, count: usize) -> Result<Strings, EngineError> {
    let what = |index: usize| format!("string output `{name}`, element {index}");
    let api = ort::api();
    let mut lengths = Vec::with_capacity(count);
    for index in 0..count {
        let mut len = 0usize;
        // SAFETY: `value` is a live string tensor of `count` elements (its type and shape were
        // checked by the caller), so `index` is in range.
        let status = unsafe { (api.GetStringTensorElementLength)(value.ptr(), index, &mut len) };
        // SAFETY: the status was just returned by the API.
        unsafe { checked(status, &what(index)) }?;
        lengths.push(len);
    }
    let mut strings = Strings::with_capacity(count, lengths.iter().sum());
    for (index, &len) in lengths.iter().enumerate() {
        strings.push_with(len, |bytes| {
            if len == 0 {
                return Ok(());
            }
            // SAFETY: `bytes` holds `len` writable bytes, the length ONNX Runtime reported for
            // element `index` of this live tensor.
            let status = unsafe { (api.GetStringTensorElement)(value.ptr(), len, index, bytes.as_mut_ptr().cast()) };
            // SAFETY: the status was just returned by the API.
            unsafe { checked(status, &what(index)) }
        })?;
    }
    Ok(strings)
}

impl Session for OrtInstance {
    fn run(&mut self, inputs: &[Tensor], _switched: bool) -> Result<Vec<Tensor>, EngineError> {
        let mut values: Vec<(&CStr, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        // Where the inputs' elements are: an output in one of them (a graph output that is
        // its input) is copied, since the input goes when the call ends.
        let mut input_ranges = Vec::with_capacity(inputs.len());
        for input in inputs {
            let shape = &input.shape;
            if let Some(bytes) = input.data.wire_bytes() {
                input_ranges.push(bytes.as_ptr_range());
            }
            let value = match input.data.view() {
                TensorView::Bool(v) => view(shape, v)?,
                TensorView::U8(v) => view(shape, v)?,
                TensorView::U16(v) => view(shape, v)?,
                TensorView::U32(v) => view(shape, v)?,
                TensorView::U64(v) => view(shape, v)?,
                TensorView::I8(v) => view(shape, v)?,
                TensorView::I16(v) => view(shape, v)?,
                TensorView::I32(v) => view(shape, v)?,
                TensorView::I64(v) => view(shape, v)?,
                TensorView::F16(v) => view(shape, v)?,
                TensorView::BF16(v) => view(shape, v)?,
                TensorView::F32(v) => view(shape, v)?,
                TensorView::F64(v) => view(shape, v)?,
                TensorView::Bytes(v) => strings(&input.name, shape, v)?,
            };
            // Inputs were validated against the model's: the name is one of its inputs'.
            let index = self.inputs.iter().position(|spec| spec.name == input.name);
            let name = index.map(|i| self.input_names[i].as_c_str());
            values.push((name.ok_or_else(|| EngineError::Run(format!("no input `{}`", input.name)))?, value));
        }
        let outputs = run(&self.session, &values, &self.output_names)?;
        self.outputs
            .iter()
            .zip(outputs)
            .map(|(spec, value)| {
                let output = Output { value, _session: self.session.clone() };
                extract(&spec.name, spec.datatype, output, &input_ranges)
            })
            .collect()
    }
}

/// One output value as ONNX Runtime allocated it, kept alive (with its session, in case a
/// buffer of the session's backs it) for as long as a tensor reads it in place.
struct Output {
    value: DynValue,
    _session: Arc<OrtSession>,
}

/// An output as a tensor: numbers are read in place from ONNX Runtime's buffer, which the
/// tensor then owns (no copy), unless they lie in an input's elements; strings are copied
/// out with their lengths.
fn extract(
    name: &str,
    datatype: DataType,
    output: Output,
    inputs: &[std::ops::Range<*const u8>],
) -> Result<Tensor, EngineError> {
    fn take<T: ort::value::PrimitiveTensorElementType + Element + std::fmt::Debug>(
        output: Output,
        inputs: &[std::ops::Range<*const u8>],
        owned: impl Fn(Vec<T>) -> TensorData,
    ) -> Result<(Vec<usize>, TensorData), EngineError> {
        let (shape, data) = output.value.try_extract_tensor::<T>().map_err(|e| EngineError::Run(e.to_string()))?;
        let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        let start = data.as_ptr().cast::<u8>();
        if inputs.iter().any(|input| input.contains(&start)) {
            return Ok((shape, owned(data.to_vec())));
        }
        let elements = std::ptr::slice_from_raw_parts(data.as_ptr(), data.len());
        // SAFETY: the elements are in the buffer of the output value, which `output` owns
        // and which moves with it (ONNX Runtime's allocation does not); nothing writes it.
        let shared = unsafe { SharedData::new(&*elements, Arc::new(output)) };
        Ok((shape, TensorData::Shared(shared)))
    }
    let (shape, data) = match datatype {
        DataType::Bool => take::<bool>(output, inputs, TensorData::Bool)?,
        DataType::U8 => take::<u8>(output, inputs, TensorData::U8)?,
        DataType::U16 => take::<u16>(output, inputs, TensorData::U16)?,
        DataType::U32 => take::<u32>(output, inputs, TensorData::U32)?,
        DataType::U64 => take::<u64>(output, inputs, TensorData::U64)?,
        DataType::I8 => take::<i8>(output, inputs, TensorData::I8)?,
        DataType::I16 => take::<i16>(output, inputs, TensorData::I16)?,
        DataType::I32 => take::<i32>(output, inputs, TensorData::I32)?,
        DataType::I64 => take::<i64>(output, inputs, TensorData::I64)?,
        DataType::F32 => take::<f32>(output, inputs, TensorData::F32)?,
        DataType::F16 => take::<f16>(output, inputs, TensorData::F16)?,
        DataType::BF16 => take::<bf16>(output, inputs, TensorData::BF16)?,
        DataType::F64 => take::<f64>(output, inputs, TensorData::F64)?,
        DataType::Bytes => {
            let value = &output.value;
            let shape: Vec<usize> = match value.dtype() {
                ValueType::Tensor { ty: TensorElementType::String, shape, .. } => {
                    shape.iter().map(|&d| d.max(0) as usize).collect()
                }
                other => return Err(EngineError::Run(format!("string output `{name}` is a {other}"))),
            };
            let count = shape.iter().product();
            (shape, TensorData::Bytes(string_elements(name, value, count)?))
        }
    };
    Ok(Tensor::new(name, shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinities_are_one_based_and_skip_the_calling_thread() {
        let placement = SessionPlacement { core_cpus: vec![vec![0], vec![1], vec![4, 5]] };
        assert_eq!(affinities(&placement).as_deref(), Some("2;5,6"));
        assert_eq!(affinities(&SessionPlacement { core_cpus: vec![vec![3]] }), None);
        assert_eq!(affinities(&SessionPlacement { core_cpus: vec![vec![], vec![]] }), None);
    }

    #[test]
    fn a_bad_env_path_is_named() {
        let err = find_library(|n| (n == DYLIB_ENV).then(|| "/nonexistent/libonnxruntime.so".to_owned())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ORT_DYLIB_PATH=/nonexistent/libonnxruntime.so does not name a file\nhint: point it at libonnxruntime.so.1.31.x, or unset it"
        );
    }
}
