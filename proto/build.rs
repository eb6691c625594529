//! Generates the tonic/prost code from `proto/*.proto` with the vendored protoc, so that no system
//! protoc is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/triad.proto");
    println!("cargo:rerun-if-changed=proto/alerts.proto");
    println!("cargo:rerun-if-changed=proto/inventory.proto");
    println!("cargo:rerun-if-changed=proto/drills.proto");
    let files = ["proto/triad.proto", "proto/alerts.proto", "proto/inventory.proto", "proto/drills.proto"];
    tonic_build::configure().compile_protos(&files, &["proto"])?;
    Ok(())
}
