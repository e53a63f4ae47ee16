//! The checked-in generated code (`src/generated/`) is what `prost` makes of the schema today:
//! regenerated here with a vendored `protoc` and compared; `UPDATE_EXPECT=1` writes it anew.
//! (Generating at build time would make the Python package build a code generator too.)

use std::path::Path;

#[test]
fn generated_code_is_the_schemas() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().expect("dir");
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("the vendored protoc");
    // SAFETY: set before any thread of this test reads the environment; no other test here
    // reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .btree_map(".")
        .out_dir(out.path())
        .file_descriptor_set_path(out.path().join("model_config.bin"))
        .compile_protos(&[crate_dir.join("proto/model_config.proto")], &[crate_dir.join("proto")])
        .expect("the schema compiles");
    for file in ["inference.rs", "model_config.bin"] {
        let fresh = std::fs::read(out.path().join(file)).expect("generated");
        let checked_in = crate_dir.join("src/generated").join(file);
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(&checked_in, &fresh).expect("write");
            continue;
        }
        let old = std::fs::read(&checked_in).unwrap_or_default();
        assert!(
            old == fresh,
            "{} is out of date: run UPDATE_EXPECT=1 cargo test -p corral-config",
            checked_in.display()
        );
    }
}
