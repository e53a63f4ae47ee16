//! Generates the gRPC service and messages from `proto/inference.proto` with a vendored
//! `protoc`, so that building needs no system package. Triton's model configuration
//! (`model_config.proto`, imported from `corral-config`) is not generated again: its messages
//! are `corral-config`'s, so the configuration endpoint answers with the message as read.

/// Every top-level message and enum of `model_config.proto`.
const MODEL_CONFIG_TYPES: [&str; 22] = [
    "DataType",
    "ModelRateLimiter",
    "ModelInstanceGroup",
    "ModelTensorReshape",
    "ModelInput",
    "ModelOutput",
    "BatchInput",
    "BatchOutput",
    "ModelVersionPolicy",
    "ModelOptimizationPolicy",
    "ModelQueuePolicy",
    "ModelDynamicBatching",
    "ModelSequenceBatching",
    "ModelEnsembling",
    "ModelParameter",
    "ModelWarmup",
    "ModelOperations",
    "ModelTransactionPolicy",
    "ModelRepositoryAgents",
    "ModelResponseCache",
    "ModelMetrics",
    "ModelConfig",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/inference.proto");
    println!("cargo:rerun-if-changed=../corral-config/proto/model_config.proto");
    // A request's raw tensors are decoded as `Bytes`: views of the received message, not a
    // copy of each (a 600 KB image would otherwise be copied once more before its decode).
    // An answer's raw tensors are `Bytes` too, sharing the output's own buffer until the
    // message is encoded.
    let mut builder = tonic_prost_build::configure()
        .build_client(false)
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        // Answers are encoded into a buffer reserved at their size (grpc/sized.rs).
        .codec_path("crate::grpc::sized::SizedCodec");
    for name in MODEL_CONFIG_TYPES {
        builder = builder.extern_path(format!(".inference.{name}"), format!("::corral_config::{name}"));
    }
    builder.compile_protos(&["proto/inference.proto"], &["proto", "../corral-config/proto"])?;
    Ok(())
}
