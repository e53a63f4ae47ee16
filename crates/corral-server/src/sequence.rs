//! Triton's sequence batcher, for stateful models (`sequence_batching` in `config.pbtxt`):
//! every request of a sequence (`sequence_id`, a number or a string) goes to the instance the
//! sequence started on, in the order the requests arrived, with the control inputs the
//! configuration declares (START, END, READY, CORRID) filled in by the server.
//!
//! Triton's `direct` and `oldest` strategies both come down to this here: corral runs one call
//! at a time per instance, so a sequence owns no batch slot, only its instance. A new
//! sequence starts on the instance with the fewest live sequences, and holds it
//! (`Model::hold`): an instance with live sequences is not retired by the autopilot until they
//! end or idle out. A sequence ends with its
//! END request, or after `max_sequence_idle_microseconds` without one; a request for a
//! sequence that is not live and does not say START gets Triton's error.

use std::{collections::HashMap, sync::Mutex, time::Instant};

use corral_engine::{DataType, Tensor, TensorData};
use corral_runtime::sync;
use corral_runtime::{InferError, Model, Reply};

use crate::{
    error::CallError,
    repository::{ControlKind, Flag, FlagValues, SequenceConfig},
    triton,
};

/// A sequence's id, as the client gave it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SequenceId {
    Number(u64),
    Text(String),
}

impl std::fmt::Display for SequenceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SequenceId::Number(n) => write!(f, "{n}"),
            SequenceId::Text(t) => write!(f, "{t}"),
        }
    }
}

/// A call's sequence parameters (`sequence_id`, `sequence_start`, `sequence_end`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SequenceParams {
    /// `None` for 0 or "" (no sequence).
    pub id: Option<SequenceId>,
    pub start: bool,
    pub end: bool,
}

struct Live {
    /// The instance's id (`Model::instance_ids`).
    instance: u64,
    last: Instant,
}

/// The live sequences of one loaded model.
pub struct Sequencer {
    /// The model's name as clients know it (errors name it).
    name: String,
    config: SequenceConfig,
    /// With a control input's batch dimension when the model batches.
    batched: bool,
    live: Mutex<HashMap<SequenceId, Live>>,
}

impl Sequencer {
    pub fn new(name: &str, config: SequenceConfig, batched: bool) -> Sequencer {
        Sequencer { name: name.to_owned(), config, batched, live: Mutex::new(HashMap::new()) }
    }

    /// Routes one call of `model` to its sequence's instance with the control inputs added,
    /// and queues it there (the lock held across routing and queueing keeps the order).
    pub fn submit(&self, model: &Model, mut inputs: Vec<Tensor>, params: &SequenceParams) -> Result<Reply, CallError> {
        let name = &self.name;
        // One row per request, as Triton's sequence batcher takes them.
        if self.batched && inputs.iter().any(|input| input.shape.first().is_some_and(|&rows| rows != 1)) {
            return Err(triton::sequence_batch_not_one(name));
        }
        let Some(id) = &params.id else {
            return Err(triton::sequence_without_id(name));
        };
        let mut live = sync::lock(&self.live);
        let now = Instant::now();
        live.retain(|_, sequence| {
            let alive = now.duration_since(sequence.last) <= self.config.idle;
            if !alive {
                model.release(sequence.instance);
            }
            alive
        });
        let instance = match live.get_mut(id) {
            Some(sequence) if !params.start => {
                sequence.last = now;
                sequence.instance
            }
            _ if params.start => {
                if let Some(restarted) = live.remove(id) {
                    model.release(restarted.instance);
                }
                let load = |instance: u64| live.values().filter(|s| s.instance == instance).count();
                // The autopilot may retire the instance chosen before the hold lands: choose
                // again from the new list (a few times: each retry follows a move).
                let held = (0..corral_runtime::PICKS_MAX).find_map(|_| {
                    let instance = model.instance_ids().into_iter().min_by_key(|&i| load(i))?;
                    model.hold(instance).then_some(instance)
                });
                let Some(instance) = held else {
                    return Err(CallError::from(InferError::Unloaded { model: name.to_owned() }));
                };
                live.insert(id.clone(), Live { instance, last: now });
                instance
            }
            _ => return Err(triton::sequence_needs_start(id, name)),
        };
        for control in &self.config.controls {
            inputs.retain(|t| t.name != control.input);
            inputs.push(self.control_tensor(&control.input, control.kind, id, params)?);
        }
        // The last request is queued before its instance is released, so the instance cannot
        // be retired under it.
        let reply = model.try_submit_to(instance, inputs).map_err(CallError::from);
        if params.end && live.remove(id).is_some() {
            model.release(instance);
        }
        reply
    }

    fn control_tensor(
        &self,
        input: &str,
        kind: ControlKind,
        id: &SequenceId,
        params: &SequenceParams,
    ) -> Result<Tensor, CallError> {
        let shape = if self.batched { vec![1, 1] } else { vec![1] };
        let data = match kind {
            ControlKind::Flag(flag, values) => {
                let on = match flag {
                    Flag::Start => params.start,
                    Flag::End => params.end,
                    Flag::Ready => true,
                };
                match values {
                    FlagValues::Int32(v) => TensorData::I32(vec![v[on as usize]]),
                    FlagValues::Fp32(v) => TensorData::F32(vec![v[on as usize]]),
                    FlagValues::Bool(v) => TensorData::Bool(vec![v[on as usize]]),
                }
            }
            ControlKind::CorrId(datatype) => {
                let SequenceId::Number(n) = id else {
                    return Err(CallError::bad_request(format!(
                        "sequence id `{id}` is a string but control input `{input}` takes a number"
                    )));
                };
                match datatype {
                    DataType::I32 => TensorData::I32(vec![i32::try_from(*n).map_err(|_| too_big(input, *n))?]),
                    _ => TensorData::I64(vec![i64::try_from(*n).map_err(|_| too_big(input, *n))?]),
                }
            }
        };
        Ok(Tensor::new(input.to_owned(), shape, data))
    }
}

fn too_big(input: &str, id: u64) -> CallError {
    CallError::bad_request(format!("sequence id {id} does not fit control input `{input}`"))
}

impl SequenceParams {
    /// From a request's parameters: `sequence_id` (whole number or string; 0 and "" mean none),
    /// `sequence_start`, `sequence_end`.
    pub fn read(
        id: Option<Result<SequenceId, String>>,
        start: Option<bool>,
        end: Option<bool>,
    ) -> Result<SequenceParams, String> {
        let id = id.transpose()?.filter(|id| *id != SequenceId::Number(0) && *id != SequenceId::Text(String::new()));
        Ok(SequenceParams { id, start: start.unwrap_or(false), end: end.unwrap_or(false) })
    }
}
