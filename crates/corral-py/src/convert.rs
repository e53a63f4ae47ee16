//! numpy arrays to the runtime's tensors and back, under the GIL.
//!
//! Inputs: a numpy array is taken as it is (its dtype must be the model's: a mismatch is the
//! runtime's input error, never a silent cast); anything with `__array__` (a CPU
//! `torch.Tensor`, a memoryview) goes through `numpy.asarray` first; plain sequences and
//! scalars are made arrays of the dtype the model expects. A C-contiguous array reaches the
//! engine without a copy: the tensor reads the array's buffer in place and holds a reference
//! to the array until the call is done (numpy refuses to resize an array others reference).
//! The caller must not write into it meanwhile, as with any buffer handed to a running
//! computation. Other layouts are gathered once, in logical order, into a new buffer.
//!
//! Outputs: no copy either: the numpy array reads the tensor's buffer in place (ONNX
//! Runtime's own output value, or the elements an engine handed over) and keeps it alive.
//!
//! BYTES tensors are numpy object arrays of `bytes`, as Triton's Python clients hand them
//! out; an input may also hold `str` (sent as UTF-8) or be a fixed-width `S`/`U` array.
//! numpy has no BF16, so BF16 tensors are refused with a message saying so.

use std::sync::Arc;

use corral_engine::{DataType, SharedData, Tensor, TensorData, TensorView, f16};
use numpy::{
    Element, PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::{prelude::*, types::PyDict};

use crate::errors;

/// numpy's name of each datatype.
pub(crate) fn numpy_name(datatype: DataType) -> &'static str {
    match datatype {
        DataType::Bool => "bool",
        DataType::U8 => "uint8",
        DataType::U16 => "uint16",
        DataType::U32 => "uint32",
        DataType::U64 => "uint64",
        DataType::I8 => "int8",
        DataType::I16 => "int16",
        DataType::I32 => "int32",
        DataType::I64 => "int64",
        DataType::F16 => "float16",
        DataType::BF16 => "bfloat16",
        DataType::F32 => "float32",
        DataType::F64 => "float64",
        DataType::Bytes => "object",
    }
}

/// Input `name` of `model` from a Python value; `expected` is the model's dtype for it, if it
/// has one. Errors start with the model's name, as the runtime's input errors do.
pub(crate) fn tensor(
    py: Python<'_>,
    model: &str,
    name: &str,
    value: &Bound<'_, PyAny>,
    expected: Option<DataType>,
) -> PyResult<Tensor> {
    if expected == Some(DataType::Bytes) {
        return byte_strings(py, model, name, value);
    }
    let owned;
    let array = match value.cast::<PyUntypedArray>() {
        Ok(array) => array,
        Err(_) => {
            owned = as_array(py, model, name, value, expected)?;
            &owned
        }
    };
    let dtype = array.dtype();
    if matches!(dtype.kind(), b'O' | b'S' | b'U') && expected.is_none_or(|d| d == DataType::Bytes) {
        return byte_strings(py, model, name, array);
    }
    let Some(datatype) = DataType::ALL.into_iter().find(|&d| descr(py, d).is_some_and(|e| dtype.is_equiv_to(&e)))
    else {
        let wanted = expected.map_or(String::new(), |d| format!("; the model expects {}", numpy_name(d)));
        return Err(errors::InferenceError::new_err(format!(
            "model `{model}`: input `{name}` has dtype {dtype}, which corral cannot pass{wanted}"
        )));
    };
    let shape = array.shape().to_vec();
    let data = match datatype {
        DataType::Bool => elements(array, TensorData::Bool)?,
        DataType::U8 => elements(array, TensorData::U8)?,
        DataType::U16 => elements(array, TensorData::U16)?,
        DataType::U32 => elements(array, TensorData::U32)?,
        DataType::U64 => elements(array, TensorData::U64)?,
        DataType::I8 => elements(array, TensorData::I8)?,
        DataType::I16 => elements(array, TensorData::I16)?,
        DataType::I32 => elements(array, TensorData::I32)?,
        DataType::I64 => elements(array, TensorData::I64)?,
        DataType::F16 => elements(array, TensorData::F16)?,
        DataType::F32 => elements(array, TensorData::F32)?,
        DataType::F64 => elements(array, TensorData::F64)?,
        DataType::BF16 | DataType::Bytes => unreachable!("no numpy dtype is matched to them"),
    };
    Ok(Tensor::new(name, shape, data))
}

/// A BYTES input: each element of `numpy.asarray(value, dtype=object)` as `bytes` or `str`.
fn byte_strings(py: Python<'_>, model: &str, name: &str, value: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    let numpy = py.import("numpy")?;
    let bad = |reason: String| {
        errors::InferenceError::new_err(format!(
            "model `{model}`: input `{name}` must hold bytes or str (BYTES): {reason}"
        ))
    };
    let array = numpy.call_method1("asarray", (value, "object")).map_err(|e| bad(e.value(py).to_string()))?;
    let array = array.cast_into::<PyUntypedArray>().map_err(|_| bad("numpy.asarray did not make an array".into()))?;
    let shape = array.shape().to_vec();
    let mut data = corral_engine::Strings::with_capacity(array.len(), 0);
    for (i, element) in array.call_method0("ravel")?.try_iter()?.enumerate() {
        let element = element?;
        if let Ok(bytes) = element.cast::<pyo3::types::PyBytes>() {
            data.push(bytes.as_bytes());
        } else if let Ok(text) = element.cast::<pyo3::types::PyString>() {
            data.push(text.to_str()?.as_bytes());
        } else {
            let kind = element.get_type().name().map_or_else(|_| "?".to_owned(), |n| n.to_string());
            return Err(bad(format!("element {i} is {kind}")));
        }
    }
    Ok(Tensor::new(name, shape, TensorData::Bytes(data)))
}

/// `numpy.asarray(value)`, with the model's dtype for values that have none of their own.
fn as_array<'py>(
    py: Python<'py>,
    model: &str,
    name: &str,
    value: &Bound<'py, PyAny>,
    expected: Option<DataType>,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let numpy = py.import("numpy")?;
    let typed = value.hasattr("dtype")? || value.hasattr("__array__")?;
    let converted = match expected {
        Some(datatype) if !typed => numpy.call_method1("asarray", (value, numpy_name(datatype))),
        _ => numpy.call_method1("asarray", (value,)),
    };
    let kind = value.get_type().name().map_or_else(|_| "?".to_owned(), |n| n.to_string());
    let bad = |reason: String| {
        let wanted = expected.map_or(String::new(), |d| format!(" of {}", numpy_name(d)));
        errors::InferenceError::new_err(format!(
            "model `{model}`: input `{name}` must be an array{wanted}, got {kind}: {reason}"
        ))
    };
    let converted = converted.map_err(|e| bad(e.value(py).to_string()))?;
    converted.cast_into::<PyUntypedArray>().map_err(|_| bad("numpy.asarray did not make an array".to_owned()))
}

/// numpy's dtype for `datatype`; `None` for BF16 (numpy has none) and BYTES (object arrays).
fn descr(py: Python<'_>, datatype: DataType) -> Option<Bound<'_, numpy::PyArrayDescr>> {
    Some(match datatype {
        DataType::Bool => numpy::dtype::<bool>(py),
        DataType::U8 => numpy::dtype::<u8>(py),
        DataType::U16 => numpy::dtype::<u16>(py),
        DataType::U32 => numpy::dtype::<u32>(py),
        DataType::U64 => numpy::dtype::<u64>(py),
        DataType::I8 => numpy::dtype::<i8>(py),
        DataType::I16 => numpy::dtype::<i16>(py),
        DataType::I32 => numpy::dtype::<i32>(py),
        DataType::I64 => numpy::dtype::<i64>(py),
        DataType::F16 => numpy::dtype::<f16>(py),
        DataType::F32 => numpy::dtype::<f32>(py),
        DataType::F64 => numpy::dtype::<f64>(py),
        DataType::BF16 | DataType::Bytes => return None,
    })
}

/// The elements in logical (row-major) order: the array's own buffer when it is
/// C-contiguous, else a gathered copy made by `owned`.
fn elements<T: Element + corral_engine::Element>(
    array: &Bound<'_, PyUntypedArray>,
    owned: fn(Vec<T>) -> TensorData,
) -> PyResult<TensorData> {
    let typed = array.cast::<PyArrayDyn<T>>()?;
    let readonly = typed.try_readonly()?;
    Ok(match readonly.as_slice() {
        Ok(slice) => {
            let owner: Arc<dyn Send + Sync> = Arc::new(typed.clone().unbind());
            // SAFETY: `owner` holds a reference to the array, so its buffer stays allocated
            // (and unresized) while the tensor lives; callers do not write into an input
            // while its call runs (see the module docs).
            TensorData::Shared(unsafe { SharedData::new(slice, owner) })
        }
        Err(_) => owned(readonly.as_array().iter().copied().collect()),
    })
}

/// Keeps a tensor's buffer (ONNX Runtime's own output value, or elements moved here) alive
/// for as long as the numpy array that reads it in place.
#[pyclass(frozen)]
struct SharedBuffer(#[allow(dead_code, reason = "held, never read: it keeps the buffer alive")] SharedData);

/// A tensor as a numpy array over the tensor's own buffer, never copied: owned elements are
/// moved behind a shared owner, and the array reads the buffer in place, kept alive by a
/// [`SharedBuffer`] (ONNX Runtime's output value, or the moved elements). BYTES elements
/// become Python `bytes`.
pub(crate) fn array(py: Python<'_>, tensor: Tensor) -> PyResult<Bound<'_, PyAny>> {
    fn in_place<'py, T: Element>(
        py: Python<'py>,
        elements: &[T],
        owner: &SharedData,
        shape: &[usize],
    ) -> PyResult<Bound<'py, PyAny>> {
        let container = Bound::new(py, SharedBuffer(owner.clone()))?.into_any();
        let view = numpy::ndarray::ArrayView1::from(elements);
        // SAFETY: `container` holds the buffer `elements` points into for as long as the
        // array lives (numpy keeps it as the array's base), and nothing else writes it.
        let array = unsafe { PyArray1::borrow_from_array(&view, container) };
        Ok(array.reshape(shape.to_vec())?.into_any())
    }
    let shape = &tensor.shape;
    let shared = tensor.data.into_shared();
    match shared.view() {
        TensorView::Bool(v) => in_place(py, v, &shared, shape),
        TensorView::U8(v) => in_place(py, v, &shared, shape),
        TensorView::U16(v) => in_place(py, v, &shared, shape),
        TensorView::U32(v) => in_place(py, v, &shared, shape),
        TensorView::U64(v) => in_place(py, v, &shared, shape),
        TensorView::I8(v) => in_place(py, v, &shared, shape),
        TensorView::I16(v) => in_place(py, v, &shared, shape),
        TensorView::I32(v) => in_place(py, v, &shared, shape),
        TensorView::I64(v) => in_place(py, v, &shared, shape),
        TensorView::F16(v) => in_place(py, v, &shared, shape),
        TensorView::F32(v) => in_place(py, v, &shared, shape),
        TensorView::F64(v) => in_place(py, v, &shared, shape),
        TensorView::BF16(_) => Err(errors::InferenceError::new_err(format!(
            "output `{}` is BF16, which numpy has no dtype for",
            tensor.name
        ))),
        TensorView::Bytes(v) => {
            let elements = v.iter().map(|e| pyo3::types::PyBytes::new(py, e));
            let list = pyo3::types::PyList::new(py, elements)?;
            let numpy = py.import("numpy")?;
            numpy.call_method1("array", (list, "object"))?.call_method1("reshape", (shape.clone(),))
        }
    }
}

/// Outputs by name.
pub(crate) fn outputs_dict(py: Python<'_>, inference: corral_runtime::Inference) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    for tensor in inference.outputs {
        let name = tensor.name.clone();
        dict.set_item(name, array(py, tensor)?)?;
    }
    Ok(dict)
}
