//! `tether-sandbox`: see `tether_tests::sandbox`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tether_shared::logging::init("text");
    let args = tether_tests::sandbox::Args::parse();
    tether_tests::sandbox::run(args, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
