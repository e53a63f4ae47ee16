//! One inference call, whichever front end it comes from (REST, gRPC unary, a gRPC stream's
//! message; later a BLS call and an ensemble's step): [`infer`] looks the model up, takes
//! the request a protocol decoded ([`Request`]), checks it in Triton's order and words
//! (`validate`, then the BYTES counts Triton checks last), reads its shared-memory inputs,
//! runs it (its sequence, its dynamic batch), turns the outputs into the answer (classes,
//! shared memory written), and keeps Triton's counters and the trace. A protocol only
//! decodes its request and encodes the [`Output`]s; the steps, and their order, are here once.
//!
//! A request refused before it ran because of its inputs counts as a failure of its model, as
//! the runtime counts its own (`ServerState::refused`).

use std::{borrow::Cow, collections::HashMap, pin::Pin, time::Instant};

use corral_engine::{DataType, Tensor};

use crate::{
    ensemble::{Plan, Step},
    error::{CallError, ErrorKind},
    sequence::SequenceParams,
    shm::{ShmInput, ShmRef},
    state::{Served, ServerState},
    validate,
};

/// A decoded inference request, as any front end hands it over.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Request {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Inputs whose bytes are in registered shared memory (read by the call).
    pub shm_inputs: Vec<ShmInput>,
    /// Empty: every output.
    pub outputs: Vec<WantedOutput>,
    /// Outputs binary unless an output says otherwise (REST's `binary_data_output`; gRPC's
    /// outputs always are).
    pub binary_output: bool,
    /// `sequence_id`, `sequence_start`, `sequence_end`.
    pub sequence: SequenceParams,
    /// A BYTES input whose elements are not its shape's, in Triton's words (the last such
    /// input, `strings.rs`): answered after the other request checks, as Triton checks it last.
    pub bytes_error: Option<CallError>,
}

/// An output to send back: by name, binary or not, or into shared memory. As a request
/// asks for it, `binary` is `None` where the request leaves it to the request's default;
/// [`wanted_outputs`] makes the choice (always `Some`).
#[derive(Clone, Debug, PartialEq)]
pub struct WantedOutput {
    pub name: String,
    pub binary: Option<bool>,
    /// Written into this shared memory instead of the answer.
    pub shm: Option<ShmRef>,
    /// `classification`: the top this many classes instead of the tensor; 0 for the tensor.
    pub class_count: usize,
}

/// How one output goes back.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputForm {
    Json,
    Binary,
    /// Already written into shared memory (this many bytes): the answer only gives its name,
    /// type and shape, and the region.
    Shm(ShmRef, usize),
}

/// One output of the answer, as the protocol encodes it.
pub struct Output<'a> {
    pub tensor: Cow<'a, Tensor>,
    pub form: OutputForm,
}

/// A shape's element count, as Triton counts it (common.cc, `GetElementCount`): `None` past
/// what an int64 holds. Every decoder sizes its inputs with it.
pub fn elements(shape: &[usize]) -> Option<usize> {
    let count = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64))?;
    (count <= i64::MAX as u64).then_some(count as usize)
}

/// A KServe datatype name.
pub fn datatype(name: &str) -> Result<DataType, String> {
    name.parse()
}

/// Runs one call of model `name` (at `version`, or its highest): `decode` turns the
/// protocol's request into a [`Request`] once the model is known, `encode` turns the answer's
/// outputs into the protocol's answer (its time is Triton's `compute_output`).
pub async fn infer<T>(
    state: &ServerState,
    name: &str,
    version: &str,
    decode: impl FnOnce(&Served) -> Result<Request, CallError>,
    encode: impl FnOnce(&Served, Option<&str>, Vec<Output<'_>>) -> Result<T, CallError>,
) -> Result<T, CallError> {
    let Checked { served, request, wanted, decoded, batch, mut trace } = check(state, name, version, decode)?;
    if served.config.decoupled {
        // The front ends that cannot stream say so in their own words as they decode.
        return Err(CallError::new(
            ErrorKind::Unsupported,
            format!("model '{name}' is decoupled: its responses stream over gRPC ModelStreamInfer"),
        ));
    }
    let mut inference = match served.ensemble() {
        Some(plan) => ensemble(state, &served, plan, request.id.as_deref(), request.inputs, decoded).await?,
        None => state.infer(&served, request.inputs, &request.sequence, decoded).await?,
    };
    ServerState::traced_compute(&mut trace, &inference);
    let encoding = Instant::now();
    let outputs = outputs_of(state, &served, &wanted, &mut inference.outputs)?;
    let answer = encode(&served, request.id.as_deref(), outputs)?;
    state.encoded(&served, batch, decoded, &inference, encoding.elapsed());
    state.trace_end(trace);
    Ok(answer)
}

/// A request checked and ready to run: Triton's checks done in its order, shared-memory
/// inputs read.
struct Checked {
    served: std::sync::Arc<Served>,
    request: Request,
    wanted: Vec<WantedOutput>,
    decoded: std::time::Duration,
    batch: u64,
    trace: Option<crate::trace::Trace>,
}

fn check(
    state: &ServerState,
    name: &str,
    version: &str,
    decode: impl FnOnce(&Served) -> Result<Request, CallError>,
) -> Result<Checked, CallError> {
    let received = Instant::now();
    let served = state.model(name, version)?;
    let trace = state.trace(&served, received);
    let decoding = Instant::now();
    let mut request = decode(&served).map_err(|e| state.refused(&served, e))?;
    let metas: Vec<validate::InputMeta> = request
        .inputs
        .iter()
        .map(|t| validate::InputMeta { name: &t.name, datatype: t.datatype(), shape: &t.shape })
        .chain(request.shm_inputs.iter().map(|i| validate::InputMeta {
            name: &i.name,
            datatype: i.datatype,
            shape: &i.shape,
        }))
        .collect();
    let asked: Vec<&str> = request.outputs.iter().map(|o| o.name.as_str()).collect();
    let id = request.id.as_deref();
    validate::request(&served, id, &metas, &asked).map_err(|e| state.refused(&served, e))?;
    if let Some(error) = request.bytes_error.take() {
        return Err(state.refused(&served, error));
    }
    let wanted = wanted_outputs(&served, &request.outputs, request.binary_output)?;
    for input in std::mem::take(&mut request.shm_inputs) {
        request.inputs.push(input.read(&state.shm, request.id.as_deref(), &served.name)?);
    }
    let decoded = decoding.elapsed();
    let batch = served.batch_of(&request.inputs);
    let mut trace = trace;
    if let Some(trace) = &mut trace {
        trace.point("QUEUE_START", Instant::now());
    }
    Ok(Checked { served, request, wanted, decoded, batch, trace })
}

/// The answer's outputs from the model's: the ones wanted, in their order, each as a tensor
/// or its classes, written into shared memory where asked.
fn outputs_of<'a>(
    state: &ServerState,
    served: &Served,
    wanted: &[WantedOutput],
    tensors: &'a mut [Tensor],
) -> Result<Vec<Output<'a>>, CallError> {
    crate::body::share(tensors);
    let tensors: &'a [Tensor] = tensors;
    let mut outputs = Vec::with_capacity(wanted.len());
    for want in wanted {
        let Some(tensor) = tensors.iter().find(|t| t.name == want.name) else { continue };
        let tensor = want.answer(served, tensor)?;
        let form = match &want.shm {
            Some(at) => {
                let bytes = crate::body::tensor_bytes(&tensor.data);
                state.shm.write(at, &bytes, &format!("output '{}'", want.name))?;
                OutputForm::Shm(at.clone(), bytes.len())
            }
            None if want.binary == Some(true) => OutputForm::Binary,
            None => OutputForm::Json,
        };
        outputs.push(Output { tensor, form });
    }
    Ok(outputs)
}

/// One response of a decoupled call, as [`infer_stream`] hands it on.
pub enum Streamed<T> {
    /// A response, and whether it is the last.
    Response(T, bool),
    /// The final flag sent with no response (Triton sends it only when the request's
    /// `triton_enable_empty_final_response` asks).
    EmptyFinal,
    /// An error response while the request ran (the model's, or how the run ended), and
    /// whether it is the last.
    Failed(CallError, bool),
    /// The request was refused before it ran (the model not found, its inputs wrong): the last.
    Refused(CallError),
}

/// A call of a decoupled model (gRPC's stream, BLS's `exec(decoupled=True)`): checked as
/// [`infer`] checks one, then each response the model sends is encoded and sent on `out` as
/// it comes, the last marked. The model's statistics count the request once, when it ends.
pub async fn infer_stream<T: Send>(
    state: &ServerState,
    name: &str,
    version: &str,
    decode: impl FnOnce(&Served) -> Result<Request, CallError>,
    mut encode: impl FnMut(&Served, Option<&str>, Vec<Output<'_>>) -> Result<T, CallError> + Send,
    out: &tokio::sync::mpsc::Sender<Streamed<T>>,
) {
    let checked = match check(state, name, version, decode) {
        Ok(checked) => checked,
        Err(error) => {
            let _ = out.send(Streamed::Refused(error)).await;
            return;
        }
    };
    let Checked { served, request, wanted, decoded, batch, trace } = checked;
    let start = Instant::now();
    if let Some(plan) = served.ensemble().filter(|_| served.config.decoupled) {
        let plan = plan.clone();
        let pending = served.counters.pending();
        let mut emit = |mut tensors: Vec<Tensor>, last: bool| match outputs_of(state, &served, &wanted, &mut tensors)
            .and_then(|o| encode(&served, request.id.as_deref(), o))
        {
            Ok(encoded) => Streamed::Response(encoded, last),
            Err(error) => Streamed::Failed(error, last),
        };
        let ended = ensemble_stream(state, &plan, request.id.as_deref(), request.inputs, &mut emit, out).await;
        drop(pending);
        state.count(&served, batch, decoded, start, ended.as_ref().map(|()| (start, start.elapsed())));
        state.trace_end(trace);
        return;
    }
    let Some(model) = served.model().filter(|_| served.config.decoupled) else {
        let refused = CallError::new(ErrorKind::Internal, format!("{name} is not decoupled"));
        let _ = out.send(Streamed::Refused(refused)).await;
        state.trace_end(trace);
        return;
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sink: corral_engine::Responses = Box::new(move |answer| {
        let _ = tx.send(answer);
    });
    let pending = served.counters.pending();
    let reply = model.try_submit_streaming(request.inputs, sink).map_err(CallError::from);
    let id = request.id.as_deref();
    let mut ended: Result<(), CallError> = Ok(());
    if let Ok(reply) = reply {
        let mut last_seen = false;
        // A request that cannot start within the exec timeout fails then (a model calling
        // itself through BLS with one instance): its worker will skip it.
        let waited = model.exec_timeout();
        let timer = tokio::time::sleep(waited);
        tokio::pin!(timer);
        let mut started = false;
        let mut abandoned = false;
        loop {
            let answer = tokio::select! {
                answer = rx.recv() => answer,
                () = &mut timer, if !started => {
                    started = true;
                    if reply.abandon() {
                        let name = model.name().to_owned();
                        let error = served_error(&served, corral_runtime::InferError::Timeout { model: name, waited });
                        let _ = out.send(Streamed::Failed(error.clone(), true)).await;
                        (last_seen, abandoned, ended) = (true, true, Err(error));
                        break;
                    }
                    continue;
                }
            };
            let Some(answer) = answer else { break };
            started = true;
            let last = answer.last;
            let item = match answer.result {
                Ok(tensors) if tensors.is_empty() && last => Streamed::EmptyFinal,
                Ok(mut tensors) => match outputs_of(state, &served, &wanted, &mut tensors)
                    .and_then(|outputs| encode(&served, id, outputs))
                {
                    Ok(encoded) => Streamed::Response(encoded, last),
                    Err(error) => Streamed::Failed(error, last),
                },
                // An error response of the model: the request goes on unless it is the last.
                Err(failure) => Streamed::Failed(CallError::new(kind_of(failure.code), failure.message), last),
            };
            if out.send(item).await.is_err() || last {
                last_seen = true;
                break;
            }
        }
        // The worker's answer says how the request ended (a stub that died, a timeout); a
        // request given up has none to wait for.
        if !abandoned && let Err(error) = reply.await.map_err(|e| served_error(&served, e)) {
            if !last_seen {
                let _ = out.send(Streamed::Failed(error.clone(), true)).await;
            }
            ended = Err(error);
        }
    } else if let Err(error) = reply {
        let _ = out.send(Streamed::Refused(error.clone())).await;
        ended = Err(error);
    }
    drop(pending);
    let compute = start.elapsed();
    state.count(&served, batch, decoded, start, ended.as_ref().map(|()| (start, compute)));
    state.trace_end(trace);
}

fn served_error(served: &Served, error: corral_runtime::InferError) -> CallError {
    served.named(CallError::from(error))
}

/// A python_backend error code's kind.
fn kind_of(code: &str) -> ErrorKind {
    match code {
        "INVALID_ARG" => ErrorKind::BadRequest,
        "NOT_FOUND" => ErrorKind::NotFound,
        "UNAVAILABLE" | "CANCELLED" => ErrorKind::Unavailable,
        "UNSUPPORTED" => ErrorKind::Unsupported,
        "ALREADY_EXISTS" => ErrorKind::AlreadyExists,
        _ => ErrorKind::Internal,
    }
}

/// A step's call, boxed: an ensemble's steps are calls of this same function.
type StepCall<'a> = Pin<Box<dyn Future<Output = Result<Vec<Tensor>, CallError>> + Send + 'a>>;

/// Runs an ensemble: each step is one call of its model ([`infer`]: its checks, placement,
/// batching and statistics), started as soon as every tensor it reads exists; tensors pass
/// from step to step shared (no copy of their elements). A step's failure is the call's, in
/// Triton's words (`in ensemble 'NAME', ...`) with the step's code. The ensemble's statistics
/// count the call, no queue of its own, and its steps' time as its compute.
async fn ensemble(
    state: &ServerState,
    served: &Served,
    plan: &Plan,
    id: Option<&str>,
    inputs: Vec<Tensor>,
    decoded: std::time::Duration,
) -> Result<corral_runtime::Inference, CallError> {
    let start = Instant::now();
    let batch = served.batch_of(&inputs);
    let pending = served.counters.pending();
    let result = steps(state, plan, id, inputs).await;
    drop(pending);
    let result = result.map_err(|e| CallError::new(e.kind, format!("in ensemble '{}', {}", plan.name, e.message)));
    state.count(served, batch, decoded, start, result.as_ref().map(|(_, compute)| (start, *compute)));
    let (outputs, compute) = result?;
    Ok(corral_runtime::Inference {
        outputs,
        failed_parts: Vec::new(),
        instance: 0,
        cores: corral_runtime::CoreSpan::new(0, 1),
        started: start,
        compute,
    })
}

/// The ensemble's outputs, and its steps' summed time.
async fn steps(
    state: &ServerState,
    plan: &Plan,
    id: Option<&str>,
    inputs: Vec<Tensor>,
) -> Result<(Vec<Tensor>, std::time::Duration), CallError> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut inputs = inputs;
    crate::body::share(&mut inputs);
    for tensor in inputs {
        tensors.insert(tensor.name.clone(), tensor);
    }
    let mut waiting: Vec<usize> = (0..plan.steps.len()).collect();
    let mut running: Vec<(usize, Instant, StepCall<'_>)> = Vec::new();
    let mut compute = std::time::Duration::ZERO;
    // The first step that failed: no step starts after it, and the call fails once those
    // running have ended (as Triton answers an ensemble's failure).
    let mut failure: Option<CallError> = None;
    loop {
        waiting.retain(|&index| {
            if failure.is_some() {
                return true;
            }
            let step = &plan.steps[index];
            if !step.inputs.iter().all(|(_, tensor)| tensors.contains_key(tensor)) {
                return true;
            }
            let given: Vec<Tensor> = step
                .inputs
                .iter()
                .map(|(input, tensor)| Tensor { name: input.clone(), ..tensors[tensor].clone() })
                .collect();
            running.push((index, Instant::now(), step_call(state, step, id, given)));
            false
        });
        if running.is_empty() {
            break;
        }
        let (at, result) = std::future::poll_fn(|cx| {
            for (at, (_, _, call)) in running.iter_mut().enumerate() {
                if let std::task::Poll::Ready(result) = call.as_mut().poll(cx) {
                    return std::task::Poll::Ready((at, result));
                }
            }
            std::task::Poll::Pending
        })
        .await;
        let (index, began, _) = running.swap_remove(at);
        compute += began.elapsed();
        let result = match result {
            Ok(result) => result,
            Err(error) => {
                failure.get_or_insert(error);
                continue;
            }
        };
        for (output, tensor) in &plan.steps[index].outputs {
            if let Some(found) = result.iter().find(|t| t.name == *output) {
                tensors.insert(tensor.clone(), Tensor { name: tensor.clone(), ..found.clone() });
            }
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    let outputs =
        plan.outputs.iter().map(|spec| tensors.remove(&spec.name)).collect::<Option<Vec<Tensor>>>().ok_or_else(
            || {
                CallError::new(
                    ErrorKind::Internal,
                    "unexpected deadlock, at least one output is not set while no more ensemble requests can be made",
                )
            },
        )?;
    Ok((outputs, compute))
}

/// Runs a decoupled ensemble (one with a decoupled step), as Triton's ensemble scheduler does:
/// each response of a decoupled step runs the steps after it on its own tensors, and each
/// full set of the ensemble's outputs is one response of the ensemble, the final flag on the
/// last (a bare final flag when there was none). Steps run one at a time within each set;
/// a failure ends the request with one error response in Triton's words.
async fn ensemble_stream<T: Send>(
    state: &ServerState,
    plan: &Plan,
    id: Option<&str>,
    inputs: Vec<Tensor>,
    emit: &mut (dyn FnMut(Vec<Tensor>, bool) -> Streamed<T> + Send),
    out: &tokio::sync::mpsc::Sender<Streamed<T>>,
) -> Result<(), CallError> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut inputs = inputs;
    crate::body::share(&mut inputs);
    for tensor in inputs {
        tensors.insert(tensor.name.clone(), tensor);
    }
    // The last set found, sent once the next is (so the final flag goes with the last).
    let mut held: Option<Vec<Tensor>> = None;
    let done = vec![false; plan.steps.len()];
    let result = generation(state, plan, id, tensors, done, &mut |set| {
        let previous = held.replace(set);
        let item = previous.map(|p| emit(p, false));
        async move {
            if let Some(item) = item {
                let _ = out.send(item).await;
            }
        }
    })
    .await;
    match (result, held) {
        (Err(error), held) => {
            // The responses found before it went out; the error ends the request.
            if let Some(set) = held {
                let _ = out.send(emit(set, false)).await;
            }
            let error = CallError::new(error.kind, format!("in ensemble '{}', {}", plan.name, error.message));
            let _ = out.send(Streamed::Failed(error.clone(), true)).await;
            Err(error)
        }
        (Ok(()), Some(last)) => {
            let _ = out.send(emit(last, true)).await;
            Ok(())
        }
        (Ok(()), None) => {
            let _ = out.send(Streamed::EmptyFinal).await;
            Ok(())
        }
    }
}

/// One set of an ensemble's tensors (`done`: the steps that made them): runs the steps whose
/// inputs it holds, a decoupled one's each response in a set of its own, and hands every set
/// that holds all the ensemble's outputs to `found`.
fn generation<'a, F, Fut>(
    state: &'a ServerState,
    plan: &'a Plan,
    id: Option<&'a str>,
    mut tensors: HashMap<String, Tensor>,
    mut done: Vec<bool>,
    found: &'a mut F,
) -> Pin<Box<dyn Future<Output = Result<(), CallError>> + Send + 'a>>
where
    F: FnMut(Vec<Tensor>) -> Fut + Send,
    Fut: Future<Output = ()> + Send,
{
    let decoupled = |step: &Step| state.model(&step.model, &step.version).is_ok_and(|s| s.config.decoupled);
    Box::pin(async move {
        // The plain steps that can run first, so that each set a decoupled step starts holds
        // what they made (they run once, not once per response).
        loop {
            let ready: Vec<usize> = (0..plan.steps.len())
                .filter(|&i| !done[i] && plan.steps[i].inputs.iter().all(|(_, tensor)| tensors.contains_key(tensor)))
                .collect();
            let Some(index) = ready.iter().copied().find(|&i| !decoupled(&plan.steps[i])).or(ready.first().copied())
            else {
                break;
            };
            done[index] = true;
            let step = &plan.steps[index];
            let given: Vec<Tensor> = step
                .inputs
                .iter()
                .map(|(input, tensor)| Tensor { name: input.clone(), ..tensors[tensor].clone() })
                .collect();
            if !decoupled(step) {
                let outputs = step_call(state, step, id, given).await?;
                take_outputs(step, outputs, &mut tensors);
                continue;
            }
            // Each response of the decoupled step: the steps after it on a set of their own.
            let (tx, mut rx) = tokio::sync::mpsc::channel(16);
            let producer = step_stream(state, step, id, given, tx);
            tokio::pin!(producer);
            // After a failure the step's call is still read to its end (its own counters end
            // with it), its later responses dropped.
            let (mut producing, mut failure) = (true, None);
            loop {
                let item = tokio::select! {
                    () = &mut producer, if producing => { producing = false; continue; }
                    item = rx.recv() => item,
                };
                let Some(item) = item else { break };
                match item {
                    Streamed::Response(outputs, _) if failure.is_none() => {
                        let mut set = tensors.clone();
                        take_outputs(step, outputs, &mut set);
                        if let Err(error) = generation(state, plan, id, set, done.clone(), found).await {
                            failure = Some(error);
                        }
                    }
                    Streamed::Failed(error, _) | Streamed::Refused(error) => {
                        failure.get_or_insert(error);
                    }
                    Streamed::Response(..) | Streamed::EmptyFinal => {}
                }
            }
            if let Some(error) = failure {
                return Err(error);
            }
        }
        if let Some(set) = plan.outputs.iter().map(|spec| tensors.get(&spec.name).cloned()).collect::<Option<Vec<_>>>()
        {
            found(set).await;
        }
        Ok(())
    })
}

/// A step's outputs into the ensemble's tensors, under the names its output map gives.
fn take_outputs(step: &Step, outputs: Vec<Tensor>, tensors: &mut HashMap<String, Tensor>) {
    for (output, tensor) in &step.outputs {
        if let Some(found) = outputs.iter().find(|t| t.name == *output) {
            tensors.insert(tensor.clone(), Tensor { name: tensor.clone(), ..found.clone() });
        }
    }
}

/// A decoupled step's call: its responses (each its tensors) into `tx` as it sends them.
async fn step_stream(
    state: &ServerState,
    step: &Step,
    id: Option<&str>,
    inputs: Vec<Tensor>,
    tx: tokio::sync::mpsc::Sender<Streamed<Vec<Tensor>>>,
) {
    let id = id.map(str::to_owned);
    let decode = move |_: &Served| Ok(step_request(step, id, inputs));
    infer_stream(state, &step.model, &step.version, decode, step_tensors, &tx).await;
}

/// A step's answer as the ensemble keeps it: its outputs' tensors.
fn step_tensors(_: &Served, _: Option<&str>, outputs: Vec<Output<'_>>) -> Result<Vec<Tensor>, CallError> {
    Ok(outputs.into_iter().map(|o| o.tensor.into_owned()).collect())
}

/// The request a step's call decodes to: its inputs, and its mapped outputs asked for.
fn step_request(step: &Step, id: Option<String>, inputs: Vec<Tensor>) -> Request {
    Request {
        id,
        inputs,
        outputs: step
            .outputs
            .iter()
            .map(|(name, _)| WantedOutput { name: name.clone(), binary: Some(true), shm: None, class_count: 0 })
            .collect(),
        binary_output: true,
        ..Request::default()
    }
}

fn step_call<'a>(state: &'a ServerState, step: &'a Step, id: Option<&str>, inputs: Vec<Tensor>) -> StepCall<'a> {
    let id = id.map(str::to_owned);
    let decode = move |_: &Served| Ok(step_request(step, id, inputs));
    Box::pin(infer(state, &step.model, &step.version, decode, step_tensors))
}

/// The outputs to return, in the model's order when none were named, each with its binary
/// choice made (`binary` always `Some`); an unknown name is the client's mistake.
fn wanted_outputs(served: &Served, wanted: &[WantedOutput], binary_all: bool) -> Result<Vec<WantedOutput>, CallError> {
    let names: Vec<&str> = served.output_specs().iter().map(|o| o.name.as_str()).collect();
    if wanted.is_empty() {
        return Ok(names
            .iter()
            .map(|n| WantedOutput { name: n.to_string(), binary: Some(binary_all), shm: None, class_count: 0 })
            .collect());
    }
    wanted
        .iter()
        .map(|w| {
            if names.contains(&w.name.as_str()) {
                Ok(WantedOutput { binary: Some(w.binary.unwrap_or(binary_all)), ..w.clone() })
            } else {
                Err(CallError::bad_request(format!(
                    "model `{}` has no output `{}`; its outputs are {}",
                    served.name,
                    w.name,
                    names.join(", ")
                )))
            }
        })
        .collect()
}

impl WantedOutput {
    /// The tensor to send for this output: `tensor` itself or its classes.
    fn answer<'a>(&self, served: &Served, tensor: &'a Tensor) -> Result<Cow<'a, Tensor>, CallError> {
        let labels = served.config.outputs.iter().find(|o| o.spec.name == self.name).map_or(&[][..], |o| &o.labels[..]);
        crate::classify::answer(tensor, self.class_count, served.config.max_batch_size > 0, labels)
    }
}
