//! Generates the gRPC service and messages from `proto/inference.proto` with a vendored
//! `protoc`, so that building needs no system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/inference.proto");
    // A request's raw tensors are decoded as `Bytes`: views of the received message, not a
    // copy of each (a 600 KB image would otherwise be copied once more before its decode).
    // An answer's raw tensors are `Bytes` too, sharing the output's own buffer until the
    // message is encoded.
    tonic_prost_build::configure()
        .build_client(false)
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        // Answers are encoded into a buffer reserved at their size (grpc/sized.rs).
        .codec_path("crate::grpc::sized::SizedCodec")
        .compile_protos(&["proto/inference.proto"], &["proto"])?;
    Ok(())
}
