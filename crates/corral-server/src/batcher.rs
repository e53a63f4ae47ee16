//! Dynamic batching (Triton's `dynamic_batching`) for models with `max_batch_size` > 0: calls
//! that arrive within the delay are combined along their first dimension, up to
//! `max_batch_size` rows, into one execution; its outputs are split back by rows.
//!
//! Only calls with the same inputs (names, datatypes, and every dimension but the first)
//! combine; a call that does not fit the forming batch closes it and starts the next. Each
//! batch runs as its own task, so batches spread over the model's replicas. A batch whose
//! REST bodies were read into one slab side by side (`slab.rs`) runs on the slab in place;
//! any other is copied together once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use corral_engine::{Tensor, TensorData};
use corral_runtime::{Inference, Model};
use tokio::sync::{mpsc, oneshot};

use crate::{
    counters::Counters,
    error::{CallError, ErrorKind},
    slab::{Slabs, Slot},
    triton,
};

struct Call {
    inputs: Vec<Tensor>,
    rows: usize,
    reply: oneshot::Sender<Result<Inference, CallError>>,
}

pub struct Batcher {
    calls: mpsc::Sender<Call>,
    /// Calls accepted and not yet in a running batch (queued, or in the batch forming).
    waiting: Arc<AtomicUsize>,
    /// Triton's `default_queue_policy { max_queue_size }`: at most this many waiting, 0 for
    /// no bound but the channel's.
    max_queue_size: usize,
    /// Where bodies for this model land, when it qualifies.
    slabs: Option<Arc<Slabs>>,
}

impl Batcher {
    /// Starts the batching task on the current tokio runtime.
    pub fn start(
        model: Model,
        max_batch_size: usize,
        delay: Duration,
        max_queue_size: usize,
        counters: Arc<Counters>,
    ) -> Batcher {
        let (calls, rx) = mpsc::channel(1024);
        let waiting = Arc::new(AtomicUsize::new(0));
        let slabs = Slabs::for_inputs(model.inputs(), max_batch_size.max(1)).map(Arc::new);
        let collecting = collect(model, max_batch_size.max(1), delay, counters, rx, waiting.clone(), slabs.clone());
        tokio::runtime::Handle::current().spawn(collecting);
        Batcher { calls, waiting, max_queue_size, slabs }
    }

    /// A place in the forming batch's buffer for a body whose tensor bytes are `len`, when
    /// the model qualifies (see `slab.rs`).
    pub fn slot(&self, len: usize) -> Option<Slot> {
        self.slabs.as_ref()?.slot(len)
    }

    /// Batches the call; a call past the queue's bound is refused at once in Triton's words
    /// (core scheduler_utils.cc, PolicyQueue::Enqueue: `Size() >= max_queue_size`; the
    /// request's id is not known here, so its prefix says `<id_unknown>`).
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<Inference, CallError> {
        let max = self.max_queue_size;
        let admitted = self.waiting.fetch_update(Relaxed, Relaxed, |n| (max == 0 || n < max).then_some(n + 1));
        if admitted.is_err() {
            return Err(triton::queue_full(None));
        }
        let rows = inputs.first().and_then(|t| t.shape.first().copied()).unwrap_or(1);
        let (reply, answer) = oneshot::channel();
        let gone = || CallError::new(ErrorKind::NotFound, "the model was unloaded");
        if self.calls.send(Call { inputs, rows, reply }).await.is_err() {
            self.waiting.fetch_sub(1, Relaxed);
            return Err(gone());
        }
        answer.await.map_err(|_| gone())?
    }
}

/// Same input names, datatypes and non-batch dimensions.
fn compatible(a: &[Tensor], b: &[Tensor]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.datatype() == y.datatype()
                && !x.shape.is_empty()
                && x.shape.len() == y.shape.len()
                && x.shape[1..] == y.shape[1..]
        })
}

async fn collect(
    model: Model,
    max_rows: usize,
    delay: Duration,
    counters: Arc<Counters>,
    mut rx: mpsc::Receiver<Call>,
    waiting: Arc<AtomicUsize>,
    slabs: Option<Arc<Slabs>>,
) {
    let mut carried: Option<Call> = None;
    loop {
        let first = match carried.take() {
            Some(call) => call,
            None => match rx.recv().await {
                Some(call) => call,
                None => return,
            },
        };
        let deadline = tokio::time::Instant::now() + delay;
        let mut rows = first.rows;
        let mut batch = vec![first];
        while rows < max_rows {
            let next = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(call)) => call,
                Ok(None) | Err(_) => break,
            };
            if rows + next.rows > max_rows || !compatible(&batch[0].inputs, &next.inputs) {
                carried = Some(next);
                break;
            }
            rows += next.rows;
            batch.push(next);
        }
        // The batch leaves the queue as it starts.
        waiting.fetch_sub(batch.len(), Relaxed);
        tokio::spawn(run(model.clone(), batch, rows, counters.clone(), slabs.clone()));
    }
}

/// The answer of a queued call, which fails when it cannot start within the model's exec
/// timeout, even while its instance stays busy with one long execution (a model that calls
/// itself through BLS with one instance would otherwise wait for itself): the call is given
/// up (`Reply::abandon`) and its worker skips it.
pub(crate) async fn started_in_time(
    model: &Model,
    mut reply: corral_runtime::Reply,
) -> Result<corral_runtime::Inference, corral_runtime::InferError> {
    let waited = model.exec_timeout();
    tokio::select! {
        answer = &mut reply => answer,
        () = tokio::time::sleep(waited) => {
            if reply.abandon() {
                Err(corral_runtime::InferError::Timeout { model: model.name().to_owned(), waited })
            } else {
                reply.await
            }
        }
    }
}

async fn run(model: Model, batch: Vec<Call>, rows: usize, counters: Arc<Counters>, slabs: Option<Arc<Slabs>>) {
    if batch.len() == 1 {
        let call = batch.into_iter().next().expect("one call");
        let result = match model.try_submit(call.inputs) {
            Ok(reply) => started_in_time(&model, reply).await.map_err(CallError::from),
            Err(error) => Err(CallError::from(error)),
        };
        counters.executions.fetch_add(1, Relaxed);
        if let Ok(inference) = &result {
            counters.batch(rows as u64, Duration::ZERO, inference.compute);
        }
        let _ = call.reply.send(result);
        return;
    }
    // The calls' rows read in place where their bodies lie side by side in one slab, else
    // each copied once, into the batch's own buffer.
    let combined: Vec<Tensor> = (0..batch[0].inputs.len())
        .map(|i| {
            let first = &batch[0].inputs[i];
            let parts: Vec<&TensorData> = batch.iter().map(|call| &call.inputs[i].data).collect();
            let mut shape = first.shape.clone();
            shape[0] = rows;
            let data = match slabs.as_ref().and_then(|slabs| slabs.joined(&parts)) {
                Some(joined) => joined,
                None => TensorData::concat(&parts).expect("inputs validated to the model's datatypes"),
            };
            Tensor::new(first.name.clone(), shape, data)
        })
        .collect();
    // The engine is told which rows are whose (a Python model's execute gets each call as a
    // request of its own, as Triton's dynamic batcher hands them).
    let parts: Vec<usize> = batch.iter().map(|call| call.rows).collect();
    let result = match model.try_submit_parts(combined, parts) {
        Ok(reply) => started_in_time(&model, reply).await,
        Err(error) => Err(error),
    };
    counters.executions.fetch_add(1, Relaxed);
    let mut inference = match result {
        Ok(inference) => {
            // One execution of the whole batch (Triton's batch_stats; inputs are concatenated
            // and outputs split in the server, not counted as the model's).
            counters.batch(rows as u64, Duration::ZERO, inference.compute);
            inference
        }
        Err(error) => {
            let error = CallError::from(error);
            for call in batch {
                let _ = call.reply.send(Err(error.clone()));
            }
            return;
        }
    };
    // Each call's rows are a view of the batch's outputs, not a copy of them. A call whose
    // request failed alone (a Python model's error response) gets its error, and has no rows
    // in the outputs.
    crate::body::share(&mut inference.outputs);
    let batch_outputs = std::mem::take(&mut inference.outputs);
    let failed = std::mem::take(&mut inference.failed_parts);
    let rows_out: usize =
        batch.iter().enumerate().filter(|(i, _)| failed.get(*i).is_none_or(Option::is_none)).map(|(_, c)| c.rows).sum();
    let mut offset = 0;
    for (i, call) in batch.into_iter().enumerate() {
        if let Some(Some(message)) = failed.get(i) {
            let source = corral_engine::EngineError::Run(message.clone());
            let error = corral_runtime::InferError::Engine { model: model.name().to_owned(), source };
            let _ = call.reply.send(Err(CallError::from(error)));
            continue;
        }
        let outputs: Result<Vec<Tensor>, CallError> =
            batch_outputs.iter().map(|output| split(output, rows_out, offset, call.rows)).collect();
        offset += call.rows;
        let answer = outputs.map(|outputs| Inference { outputs, ..inference.clone() });
        let _ = call.reply.send(answer);
    }
}

/// Rows `offset..offset + count` of `output` (shared: see `body::share`), whose first
/// dimension is `rows`: a view of them.
fn split(output: &Tensor, rows: usize, offset: usize, count: usize) -> Result<Tensor, CallError> {
    if output.shape.first() != Some(&rows) {
        return Err(CallError::new(
            ErrorKind::Internal,
            format!("output `{}` has shape {:?}: cannot split a batch of {rows} rows", output.name, output.shape),
        ));
    }
    let per_row = output.data.len() / rows.max(1);
    let mut shape = output.shape.clone();
    shape[0] = count;
    let range = offset * per_row..(offset + count) * per_row;
    // Cloning shared data clones a handle to its buffer.
    let data = TensorData::Shared(output.data.clone().into_shared().slice(range));
    Ok(Tensor::new(output.name.clone(), shape, data))
}
