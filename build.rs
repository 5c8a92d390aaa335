//! Compiles the vendored onnx.proto (ONNX 1.23, Apache-2.0) into Rust types with prost, using the
//! pure-Rust protox compiler (no protoc on the machines this builds on). Only the training
//! feature writes ONNX.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "train")]
    {
        println!("cargo:rerun-if-changed=proto/onnx.proto");
        let descriptors = protox::compile(["proto/onnx.proto"], ["proto"])?;
        prost_build::Config::new().compile_fds(descriptors)?;
    }
    Ok(())
}
