//! The Kubernetes API and Presto coordinator stand-ins as a process of their own, for tests
//! that put "the customer's VPC" in a network namespace: the agent there reaches them on
//! the namespace's loopback. Prints `READY kube=URL presto=URL` when serving; stops on
//! SIGTERM or Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use tether_tests::standins::kube::{KubeOptions, KubeStandIn};
use tether_tests::standins::presto::{PrestoOptions, PrestoStandIn, Workload};

#[derive(Parser, Debug)]
#[command(about = "Kubernetes and Presto stand-ins for namespace tests")]
struct Args {
    /// Where the Kubernetes stand-in listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    kube_listen: SocketAddr,
    /// Write a kubeconfig for it here.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Namespace of the Presto services.
    #[arg(long, default_value = "tether")]
    namespace: String,
    /// Serve the Presto stand-in behind this Service (repeatable).
    #[arg(long = "presto-service")]
    presto_services: Vec<String>,
    /// Simulated queries per second.
    #[arg(long, default_value_t = 2.0)]
    queries_per_second: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let kube = KubeStandIn::start(KubeOptions {
        listen: args.kube_listen,
        ..KubeOptions::default()
    })
    .await?;
    kube.write_kubeconfig(&args.kubeconfig)?;
    let presto = PrestoStandIn::start(PrestoOptions::default()).await?;
    for svc in &args.presto_services {
        kube.register_service_backend(&args.namespace, svc, presto.addr());
    }
    let _traffic = presto.start_workload(Workload {
        count: None,
        per_second: args.queries_per_second,
        ..Workload::default()
    });
    let mut out = std::io::stdout();
    writeln!(out, "READY kube={} presto={}", kube.url(), presto.url())?;
    out.flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    kube.shutdown().await;
    presto.shutdown().await;
    Ok(())
}
