//! Compiles `tether/v1/*.proto` with protox (pure Rust, no system `protoc`) and generates
//! the prost messages and tonic client/server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["tether/v1/agent_control.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    // The descriptors themselves, for what must be derived from the protocol at run time
    // (the agent's egress manifest).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("tether_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::TetherCodec")
        .compile_fds(fds)?;
    Ok(())
}
