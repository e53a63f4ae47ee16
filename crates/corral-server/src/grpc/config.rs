//! Model metadata and statistics as the gRPC messages carry them: tensor metadata, and
//! durations from the server's counters. (The model configuration is `corral-config`'s message
//! itself: `metadata::config`.)

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

pub(super) fn duration(tally: &Tally) -> Option<pb::StatisticDuration> {
    use std::sync::atomic::Ordering::Relaxed;
    Some(pb::StatisticDuration { count: tally.count.load(Relaxed), ns: tally.ns.load(Relaxed) })
}

/// Triton's `compute_input` (0), `compute_infer` (1) or `compute_output` (2).
pub(super) fn compute(counters: &crate::counters::Counters, which: usize) -> Option<pb::StatisticDuration> {
    let (count, ns) = counters.compute.read()[which];
    Some(pb::StatisticDuration { count, ns })
}
