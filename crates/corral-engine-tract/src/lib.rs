//! The tract backend: pure-Rust ONNX inference (`tract-onnx`), corral's fallback when ONNX
//! Runtime cannot be found. It needs no shared library, and runs 1.2× to 5× slower than ONNX
//! Runtime on real models, which is why it is only the fallback.
//!
//! [`TractEngine::prepare`] parses, types and optimizes a model once into a plan held in an
//! `Arc`: every replica's session shares that plan, so the weights exist once per process
//! whatever the replica count. Each run makes its own state (the intermediate values), as
//! tract's states are tied to the thread that made them.
//!
//! tract runs an inference on the calling thread. A K-core instance therefore computes on
//! the worker thread pinned to its first core; the gang still holds its K cores while it
//! runs, so placement and switching behave exactly as with ONNX Runtime.
//!
//! Dimensions the model leaves open (`batch`, `-1`) stay symbolic in the plan, and are bound
//! at each run from the input shapes.
//!
//! tract has no BF16, and its strings are UTF-8: a BYTES element that is not text is refused
//! with the element named (ONNX Runtime carries any bytes).

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
};

use corral_engine::{
    DataType, EngineError, ModelSource, Prepared, Session, SessionPlacement, Sessions, Tensor, TensorData, TensorSpec,
    TensorView,
};
use tract_onnx::prelude::{
    Datum, DatumType, Framework, InferenceFact, InferenceModel, InferenceModelExt, IntoTValue, OutletId, SimplePlan,
    TDim, TValue, TVec, Tensor as TractTensor, TypedFact, TypedModel, TypedOp,
};
use tract_onnx::tract_hir::internal::{DimFact, Factoid, ShapeFactoid};

type Plan = SimplePlan<TypedFact, Box<dyn TypedOp>, TypedModel>;

/// tract's ONNX loader. Cheap to build; models are parsed in [`TractEngine::prepare`].
#[derive(Debug, Default)]
pub struct TractEngine {}

impl TractEngine {
    pub fn new() -> TractEngine {
        TractEngine {}
    }
}

impl corral_engine::Engine for TractEngine {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn prepare(&self, source: &ModelSource) -> Result<Arc<Prepared>, EngineError> {
        let ModelSource::Onnx(path) = source else {
            return Err(EngineError::Unsupported { engine: "tract", reason: "not an ONNX model".to_owned() });
        };
        // tract's errors chain their causes; `{:#}` shows the whole chain on one line.
        let load_error =
            |e: tract_onnx::prelude::TractError| EngineError::Load { path: path.clone(), reason: format!("{e:#}") };
        let onnx = tract_onnx::onnx();
        let mut proto = onnx.proto_model_for_path(path).map_err(load_error)?;
        plain_dim_names(&mut proto);
        let dir = path.parent().and_then(Path::to_str);
        let parsed = onnx.parse(&proto, dir).map_err(load_error)?;
        if !parsed.unresolved_inputs.is_empty() {
            let reason = format!("inputs that nothing produces: {:?}", parsed.unresolved_inputs);
            return Err(EngineError::Load { path: path.clone(), reason });
        }
        let model = parsed.model;
        let (open, open_inputs) = open_model(model.clone(), path)?;
        let (symbolic, inputs, outputs) = match symbolic_plan(model, path) {
            Ok((plan, (inputs, outputs))) => (Some(Arc::new(plan)), inputs, outputs),
            Err(error) => {
                tracing::debug!(model = %path.display(), %error, "tract: one plan per input shape");
                let outputs = open_outputs(&open, path)?;
                (None, open_inputs, outputs)
            }
        };
        let plans = Plans { symbolic, open, by_shape: Mutex::new(HashMap::new()) };
        let model = TractModel { plans: Arc::new(plans), inputs: inputs.clone(), outputs: outputs.clone() };
        Ok(Arc::new(Prepared::new(inputs, outputs, model)))
    }
}

/// tract reads a named dimension as an expression over symbols, where `.` is not allowed;
/// exporters write names like `p2o.DynamicDimension.0` (PaddleOCR's), so dots become `_`.
fn plain_dim_names(proto: &mut tract_onnx::pb::ModelProto) {
    use tract_onnx::pb::{tensor_shape_proto::dimension::Value, type_proto};
    let Some(graph) = proto.graph.as_mut() else { return };
    let infos = graph.input.iter_mut().chain(graph.output.iter_mut()).chain(graph.value_info.iter_mut());
    for info in infos {
        let Some(type_proto::Value::TensorType(tensor)) = info.r#type.as_mut().and_then(|t| t.value.as_mut()) else {
            continue;
        };
        for dim in tensor.shape.iter_mut().flat_map(|shape| shape.dim.iter_mut()) {
            if let Some(Value::DimParam(name)) = dim.value.as_mut() {
                *name = name.replace('.', "_");
            }
        }
    }
}

/// Inputs and outputs.
type Signature = (Vec<TensorSpec>, Vec<TensorSpec>);

/// The common case: one plan with the open dimensions left symbolic.
fn symbolic_plan(model: InferenceModel, path: &Path) -> Result<(Plan, Signature), EngineError> {
    let load_error =
        |e: tract_onnx::prelude::TractError| EngineError::Load { path: path.to_owned(), reason: format!("{e:#}") };
    let typed = model.into_typed().map_err(load_error)?;
    let inputs = typed_signature(&typed, typed.input_outlets().map_err(load_error)?, path)?;
    let outputs = typed_signature(&typed, typed.output_outlets().map_err(load_error)?, path)?;
    let plan = typed.into_optimized().and_then(|m| m.into_runnable()).map_err(load_error)?;
    Ok((plan, (inputs, outputs)))
}

/// The model with its open input dimensions unknown rather than symbolic: the starting
/// point of per-shape plans, and the signature of models tract cannot type symbolically.
fn open_model(mut model: InferenceModel, path: &Path) -> Result<(InferenceModel, Vec<TensorSpec>), EngineError> {
    let load_error =
        |e: tract_onnx::prelude::TractError| EngineError::Load { path: path.to_owned(), reason: format!("{e:#}") };
    let mut inputs = Vec::new();
    for (i, outlet) in model.input_outlets().map_err(load_error)?.to_vec().into_iter().enumerate() {
        let name = model.node(outlet.node).name.clone();
        let fact = model.input_fact(i).map_err(load_error)?.clone();
        let spec = inferred_spec(name, &fact, path)?;
        let dims: TVec<DimFact> =
            spec.shape.iter().map(|&d| if d < 0 { DimFact::default() } else { DimFact::from(TDim::Val(d)) }).collect();
        let fact = InferenceFact::dt(fact.datum_type.concretize().expect("checked by inferred_spec"))
            .with_shape(ShapeFactoid::closed(dims));
        model.set_input_fact(i, fact).map_err(load_error)?;
        inputs.push(spec);
    }
    Ok((model, inputs))
}

/// The outputs as far as analysis settles them without input shapes (the rest stays open).
fn open_outputs(open: &InferenceModel, path: &Path) -> Result<Vec<TensorSpec>, EngineError> {
    let load_error =
        |e: tract_onnx::prelude::TractError| EngineError::Load { path: path.to_owned(), reason: format!("{e:#}") };
    let mut analysed = open.clone();
    // Best effort: an error here only leaves more of the outputs open.
    let _ = analysed.analyse(false);
    analysed
        .output_outlets()
        .map_err(load_error)?
        .iter()
        .map(|&outlet| {
            let name = analysed.outlet_label(outlet).unwrap_or(&analysed.node(outlet.node).name).to_owned();
            inferred_spec(name, analysed.outlet_fact(outlet).map_err(load_error)?, path)
        })
        .collect()
}

fn typed_signature(model: &TypedModel, outlets: &[OutletId], path: &Path) -> Result<Vec<TensorSpec>, EngineError> {
    outlets
        .iter()
        .map(|&outlet| {
            // An output's ONNX name is its outlet's label; an input's is its source node's name.
            let name = model.outlet_label(outlet).unwrap_or(&model.node(outlet.node).name).to_owned();
            let fact = model
                .outlet_fact(outlet)
                .map_err(|e| EngineError::Load { path: path.to_owned(), reason: format!("`{name}`: {e:#}") })?;
            let shape = fact.shape.iter().map(|d| if let TDim::Val(n) = d { *n } else { -1 }).collect();
            Ok(TensorSpec::new(name.clone(), datatype(fact.datum_type, &name, path)?, shape))
        })
        .collect()
}

fn inferred_spec(name: String, fact: &InferenceFact, path: &Path) -> Result<TensorSpec, EngineError> {
    let Some(datum) = fact.datum_type.concretize() else {
        return Err(EngineError::Load {
            path: path.to_owned(),
            reason: format!("tract cannot tell the element type of `{name}`"),
        });
    };
    let shape = fact
        .shape
        .dims()
        .map(|d| match d.concretize() {
            Some(TDim::Val(n)) => n,
            _ => -1,
        })
        .collect();
    Ok(TensorSpec::new(name.clone(), datatype(datum, &name, path)?, shape))
}

fn datatype(datum: DatumType, name: &str, path: &Path) -> Result<DataType, EngineError> {
    Ok(match datum {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::U8,
        DatumType::U16 => DataType::U16,
        DatumType::U32 => DataType::U32,
        DatumType::U64 => DataType::U64,
        DatumType::I8 => DataType::I8,
        DatumType::I16 => DataType::I16,
        DatumType::I32 => DataType::I32,
        DatumType::I64 => DataType::I64,
        DatumType::F16 => DataType::F16,
        DatumType::F32 => DataType::F32,
        DatumType::F64 => DataType::F64,
        DatumType::String => DataType::Bytes,
        other => {
            return Err(EngineError::Load {
                path: path.to_owned(),
                reason: format!("`{name}` has element type {other:?}, which corral does not carry yet"),
            });
        }
    })
}

/// Per-shape plans kept per model: beyond this many input shapes they are all dropped and
/// made again as needed (a client sweeping sizes must not grow memory without bound).
const SHAPES_MAX: usize = 16;

/// A model's plans. The symbolic plan serves every shape when tract can type the model
/// with open dimensions; otherwise, and for any shape the symbolic plan fails on (tract has
/// had bugs there: magika's symbolic plan panics at batch 3), a plan is made for the exact
/// input shapes at their first run and kept for the next.
struct Plans {
    symbolic: Option<Arc<Plan>>,
    open: InferenceModel,
    by_shape: Mutex<HashMap<Vec<Vec<usize>>, Arc<Plan>>>,
}

/// Runs `plan`, turning a panic inside tract into an error: the worker and the other
/// models must outlive a bug in one model's operators.
fn guarded(plan: &Plan, inputs: TVec<TValue>) -> Result<TVec<TValue>, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan.run(inputs))) {
        Ok(outputs) => outputs.map_err(|e| format!("{e:#}")),
        Err(panic) => {
            let text =
                panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
            Err(format!("tract panicked: {}", text.unwrap_or_else(|| "(no message)".to_owned())))
        }
    }
}

impl Plans {
    fn run(&self, inputs: TVec<TValue>) -> Result<TVec<TValue>, EngineError> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|v| v.shape().to_vec()).collect();
        let known = corral_cores::sync::lock(&self.by_shape).get(&shapes).cloned();
        if let Some(plan) = known {
            return guarded(&plan, inputs).map_err(EngineError::Run);
        }
        if let Some(symbolic) = &self.symbolic {
            match guarded(symbolic, inputs.clone()) {
                Ok(outputs) => return Ok(outputs),
                Err(error) => {
                    tracing::warn!(?shapes, %error, "tract's symbolic plan failed; making one for these shapes")
                }
            }
        }
        let plan = self.for_shapes(&shapes, &inputs)?;
        guarded(&plan, inputs).map_err(EngineError::Run)
    }

    fn for_shapes(&self, shapes: &[Vec<usize>], inputs: &TVec<TValue>) -> Result<Arc<Plan>, EngineError> {
        let cannot = |e: tract_onnx::prelude::TractError| {
            EngineError::Run(format!("tract cannot run input shapes {shapes:?}: {e:#}"))
        };
        // Built outside the lock: other shapes keep running meanwhile.
        let mut model = self.open.clone();
        for (i, value) in inputs.iter().enumerate() {
            model.set_input_fact(i, InferenceFact::dt_shape(value.datum_type(), value.shape())).map_err(cannot)?;
        }
        let plan = Arc::new(model.into_optimized().and_then(|m| m.into_runnable()).map_err(cannot)?);
        let mut by_shape = corral_cores::sync::lock(&self.by_shape);
        if by_shape.len() >= SHAPES_MAX {
            by_shape.clear();
        }
        by_shape.insert(shapes.to_vec(), Arc::clone(&plan));
        Ok(plan)
    }
}

/// A model read by tract; its plans (and weights) are shared by all sessions.
struct TractModel {
    plans: Arc<Plans>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl Sessions for TractModel {
    fn session(&self, _placement: &SessionPlacement) -> Result<Box<dyn Session>, EngineError> {
        Ok(Box::new(TractSession {
            plans: Arc::clone(&self.plans),
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
        }))
    }
}

struct TractSession {
    plans: Arc<Plans>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

fn tract_tensor<T: Datum + Copy>(shape: &[usize], data: &[T]) -> Result<TValue, EngineError> {
    TractTensor::from_shape(shape, data).map(IntoTValue::into_tvalue).map_err(|e| EngineError::Run(format!("{e:#}")))
}

fn to_tract(input: &Tensor) -> Result<TValue, EngineError> {
    let shape = &input.shape;
    match input.data.view() {
        TensorView::Bool(v) => tract_tensor(shape, v),
        TensorView::U8(v) => tract_tensor(shape, v),
        TensorView::U16(v) => tract_tensor(shape, v),
        TensorView::U32(v) => tract_tensor(shape, v),
        TensorView::U64(v) => tract_tensor(shape, v),
        TensorView::I8(v) => tract_tensor(shape, v),
        TensorView::I16(v) => tract_tensor(shape, v),
        TensorView::I32(v) => tract_tensor(shape, v),
        TensorView::I64(v) => tract_tensor(shape, v),
        TensorView::F16(v) => tract_tensor(shape, v),
        TensorView::F32(v) => tract_tensor(shape, v),
        TensorView::F64(v) => tract_tensor(shape, v),
        TensorView::BF16(_) => Err(EngineError::Run(format!(
            "input `{}` is BF16, which tract does not carry; run the model with onnxruntime",
            input.name
        ))),
        TensorView::Bytes(v) => {
            let text = v
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    String::from_utf8(e.to_vec()).map_err(|_| {
                        EngineError::Run(format!(
                            "BYTES input `{}`: element {i} is not UTF-8 text, which tract's strings must be",
                            input.name
                        ))
                    })
                })
                .collect::<Result<Vec<String>, _>>()?;
            tract_onnx::prelude::tract_ndarray::ArrayD::from_shape_vec(shape.as_slice(), text)
                .map(|a| TractTensor::from(a).into_tvalue())
                .map_err(|e| EngineError::Run(format!("input `{}`: {e}", input.name)))
        }
    }
}

fn from_tract(spec: &TensorSpec, value: &TValue) -> Result<Tensor, EngineError> {
    fn take<T: Datum + Copy>(value: &TValue) -> Result<Vec<T>, EngineError> {
        value.as_slice::<T>().map(<[T]>::to_vec).map_err(|e| EngineError::Run(format!("{e:#}")))
    }
    let data = match spec.datatype {
        DataType::Bool => TensorData::Bool(take(value)?),
        DataType::U8 => TensorData::U8(take(value)?),
        DataType::U16 => TensorData::U16(take(value)?),
        DataType::U32 => TensorData::U32(take(value)?),
        DataType::U64 => TensorData::U64(take(value)?),
        DataType::I8 => TensorData::I8(take(value)?),
        DataType::I16 => TensorData::I16(take(value)?),
        DataType::I32 => TensorData::I32(take(value)?),
        DataType::I64 => TensorData::I64(take(value)?),
        DataType::F16 => TensorData::F16(take(value)?),
        DataType::F32 => TensorData::F32(take(value)?),
        DataType::F64 => TensorData::F64(take(value)?),
        DataType::BF16 => return Err(EngineError::Run(format!("output `{}`: tract has no BF16", spec.name))),
        DataType::Bytes => TensorData::Bytes(
            value
                .as_slice::<String>()
                .map_err(|e| EngineError::Run(format!("{e:#}")))?
                .iter()
                .map(String::as_bytes)
                .collect(),
        ),
    };
    Ok(Tensor::new(spec.name.clone(), value.shape().to_vec(), data))
}

impl Session for TractSession {
    fn run(&mut self, inputs: &[Tensor], _switched: bool) -> Result<Vec<Tensor>, EngineError> {
        // tract takes inputs by position; callers may name them in any order.
        let mut ordered: TVec<TValue> = TVec::with_capacity(self.inputs.len());
        for spec in &self.inputs {
            let input = inputs
                .iter()
                .find(|t| t.name == spec.name)
                .ok_or_else(|| EngineError::Run(format!("no input `{}`", spec.name)))?;
            ordered.push(to_tract(input)?);
        }
        let outputs = self.plans.run(ordered)?;
        self.outputs.iter().zip(&outputs).map(|(spec, value)| from_tract(spec, value)).collect()
    }
}
