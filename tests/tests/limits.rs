//! Size limits on every RPC and the TLS versions the gRPC port speaks.

use std::sync::Arc;
use std::time::Duration;

use tether_proto::v1::EnrollRequest;
use tether_tests::harness::grpc::raw_client;
use tether_tests::harness::{ControlPlaneOptions, ControlPlaneProc, TenantFixture, init};

#[tokio::test]
async fn oversized_messages_and_fields_are_refused_without_using_the_token() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let token = fx.enrollment_token(&api, 600).await;
    let mut c = raw_client(&cp.grpc_url(), &cp.ca_file(), None)
        .await
        .expect("TLS");

    // Over the 4 MiB message limit.
    let huge = EnrollRequest {
        bootstrap_token: token.clone(),
        csr_pem: "A".repeat(5 << 20),
        ..Default::default()
    };
    let err = c.enroll(huge).await.expect_err("5 MiB message");
    assert!(
        matches!(
            err.code(),
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange
        ),
        "{err:?}"
    );
    // Under the message limit but over the field limit: the field is named.
    let big = EnrollRequest {
        bootstrap_token: token.clone(),
        csr_pem: "A".repeat(20_000),
        ..Default::default()
    };
    let err = c.enroll(big).await.expect_err("20 KB CSR");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("csr_pem"), "{err:?}");
    // A CSR that is not one.
    let bad = EnrollRequest {
        bootstrap_token: token.clone(),
        csr_pem: "not a csr".into(),
        ..Default::default()
    };
    let err = c.enroll(bad).await.expect_err("garbage CSR");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("invalid CSR"), "{err:?}");
    // None of that used the token up.
    let (_, csr) = tether_shared::pki::key_and_csr("agent").expect("csr");
    let ok = EnrollRequest {
        bootstrap_token: token,
        csr_pem: csr,
        ..Default::default()
    };
    c.enroll(ok).await.expect("the token still enrolls once");
}

async fn handshake(
    addr: &str,
    ca_file: &std::path::Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<rustls::ProtocolVersion, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for c in tether_shared::pki::certs_from_pem(&std::fs::read(ca_file).expect("ca")).expect("pem")
    {
        roots.add(c).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))??;
    Ok(tls.get_ref().1.protocol_version().expect("negotiated"))
}

#[tokio::test]
async fn grpc_port_prefers_tls13_and_accepts_tls12() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let both = [&rustls::version::TLS13, &rustls::version::TLS12];
    assert_eq!(
        handshake(&cp.grpc, &cp.ca_file(), &both)
            .await
            .expect("default"),
        rustls::ProtocolVersion::TLSv1_3
    );
    assert_eq!(
        handshake(&cp.grpc, &cp.ca_file(), &[&rustls::version::TLS12])
            .await
            .expect("1.2"),
        rustls::ProtocolVersion::TLSv1_2
    );
}
