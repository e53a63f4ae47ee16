//! Generates the gRPC service and messages from `proto/inference.proto` with a vendored
//! `protoc`, so that building needs no system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/inference.proto");
    // A request's raw tensors are decoded as `Bytes`: views of the received message, not a
    // copy of each (a 600 KB image would otherwise be copied once more before its decode).
    tonic_prost_build::configure()
        .build_client(false)
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .compile_protos(&["proto/inference.proto"], &["proto"])?;
    Ok(())
}
