//! Generates the kubelet's device-plugin API (`proto/api.proto`, both services, client and
//! server sides) with a vendored `protoc`, and keeps its descriptor set, from which a test
//! lists every name and field number.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/api.proto");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("deviceplugin_v1beta1.bin"))
        .compile_protos(&["proto/api.proto"], &["proto"])?;
    Ok(())
}
