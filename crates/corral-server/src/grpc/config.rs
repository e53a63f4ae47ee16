//! Triton's model configuration and statistics as the gRPC messages carry them: tensor
//! metadata, sequence batching, datatypes, and durations from the server's counters.

use corral_engine::DataType;

use super::pb;
use crate::{counters::Tally, metadata};

pub(super) fn tensor_metadata(views: Vec<metadata::TensorMeta>) -> Vec<pb::model_metadata_response::TensorMetadata> {
    views
        .into_iter()
        .map(|t| pb::model_metadata_response::TensorMetadata {
            name: t.name,
            datatype: t.datatype.kserve_name().to_owned(),
            shape: t.shape,
        })
        .collect()
}

pub(super) fn sequence_batching(sequence: &crate::repository::SequenceConfig) -> pb::ModelSequenceBatching {
    use crate::repository::{ControlKind, Flag, FlagValues};
    use pb::model_sequence_batching::{Control, ControlInput, StrategyDirect, control::Kind};
    let control_input = sequence
        .controls
        .iter()
        .map(|c| {
            let mut control = Control::default();
            match c.kind {
                ControlKind::Flag(flag, values) => {
                    control.kind = match flag {
                        Flag::Start => Kind::ControlSequenceStart,
                        Flag::End => Kind::ControlSequenceEnd,
                        Flag::Ready => Kind::ControlSequenceReady,
                    } as i32;
                    match values {
                        FlagValues::Int32(v) => control.int32_false_true = v.to_vec(),
                        FlagValues::Fp32(v) => control.fp32_false_true = v.to_vec(),
                        FlagValues::Bool(v) => control.bool_false_true = v.to_vec(),
                    }
                }
                ControlKind::CorrId(datatype) => {
                    control.kind = Kind::ControlSequenceCorrid as i32;
                    control.data_type = data_type(datatype);
                }
            }
            ControlInput { name: c.input.clone(), control: vec![control] }
        })
        .collect();
    pb::ModelSequenceBatching {
        max_sequence_idle_microseconds: sequence.idle.as_micros() as u64,
        control_input,
        direct: Some(StrategyDirect {}),
    }
}

pub(super) fn data_type(datatype: DataType) -> i32 {
    let value = match datatype {
        DataType::Bool => pb::DataType::TypeBool,
        DataType::U8 => pb::DataType::TypeUint8,
        DataType::U16 => pb::DataType::TypeUint16,
        DataType::U32 => pb::DataType::TypeUint32,
        DataType::U64 => pb::DataType::TypeUint64,
        DataType::I8 => pb::DataType::TypeInt8,
        DataType::I16 => pb::DataType::TypeInt16,
        DataType::I32 => pb::DataType::TypeInt32,
        DataType::I64 => pb::DataType::TypeInt64,
        DataType::F16 => pb::DataType::TypeFp16,
        DataType::BF16 => pb::DataType::TypeBf16,
        DataType::F32 => pb::DataType::TypeFp32,
        DataType::F64 => pb::DataType::TypeFp64,
        DataType::Bytes => pb::DataType::TypeString,
    };
    value as i32
}

pub(super) fn duration(tally: &Tally) -> Option<pb::StatisticDuration> {
    use std::sync::atomic::Ordering::Relaxed;
    Some(pb::StatisticDuration { count: tally.count.load(Relaxed), ns: tally.ns.load(Relaxed) })
}

/// Triton's `compute_input` (0), `compute_infer` (1) or `compute_output` (2).
pub(super) fn compute(counters: &crate::counters::Counters, which: usize) -> Option<pb::StatisticDuration> {
    let (count, ns) = counters.compute.read()[which];
    Some(pb::StatisticDuration { count, ns })
}
