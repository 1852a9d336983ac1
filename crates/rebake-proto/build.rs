//! Compiles `proto/` with `protox` (pure Rust, no `protoc` install) into prost + tonic code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script binary may be shared by clones at other paths.
    let proto_root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        proto_root.join("rebake/events/v1/events.proto"),
        proto_root.join("rebake/control/v1/control.proto"),
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let file_descriptors = protox::compile(&files, [&proto_root])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("rebake_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&file_descriptors))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_fds(file_descriptors)?;
    Ok(())
}
