//! Model metadata and statistics as the gRPC messages carry them: tensor metadata, and the
//! protocol-neutral statistics (`metadata::ModelStats`) as messages. (The model configuration is `corral-config`'s message
//! itself: `metadata::config`.)

use super::pb;
use crate::metadata;

pub(super) fn tensor_metadata(
    views: Vec<corral_engine::TensorSpec>,
) -> Vec<pb::model_metadata_response::TensorMetadata> {
    views
        .into_iter()
        .map(|t| pb::model_metadata_response::TensorMetadata {
            name: t.name,
            datatype: t.datatype.kserve_name().to_owned(),
            shape: t.shape,
        })
        .collect()
}

pub(super) fn duration(d: metadata::Duration) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration { count: d.count, ns: d.ns })
}

/// Triton's statistics of one model version as the gRPC message.
pub(super) fn model_statistics(s: metadata::ModelStats) -> pb::ModelStatistics {
    pb::ModelStatistics {
        name: s.name,
        version: s.version,
        last_inference: s.last_inference,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(pb::InferStatistics {
            success: duration(s.success),
            fail: duration(s.fail),
            queue: duration(s.queue),
            compute_input: duration(s.compute[0]),
            compute_infer: duration(s.compute[1]),
            compute_output: duration(s.compute[2]),
            cache_hit: duration(Default::default()),
            cache_miss: duration(Default::default()),
        }),
        batch_stats: s
            .batches
            .into_iter()
            .map(|b| pb::InferBatchStatistics {
                batch_size: b.batch_size,
                compute_input: duration(b.compute_input),
                compute_infer: duration(b.compute_infer),
                compute_output: duration(b.compute_output),
            })
            .collect(),
        memory_usage: Vec::new(),
        response_stats: Default::default(),
    }
}
