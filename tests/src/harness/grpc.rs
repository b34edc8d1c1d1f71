//! A raw gRPC client of the control plane, for tests that must send what a real agent
//! never would.

use std::path::Path;
use std::sync::Arc;

use tether_agent::transport::{self, ConnectError, TlsMaterial};
use tether_proto::v1::agent_control_client::AgentControlClient;
use tether_proto::v1::{AgentMessage, Hello, agent_message};
use tonic::transport::Channel;

/// Connects with the CA in `ca_file` and, optionally, a client certificate and key (PEM).
pub async fn raw_client(
    url: &str,
    ca_file: &Path,
    client: Option<(&str, &str)>,
) -> Result<AgentControlClient<Channel>, ConnectError> {
    let uri = transport::parse_control_plane_url(url)?;
    let roots = tether_shared::pki::certs_from_pem(&std::fs::read(ca_file).expect("ca file"))
        .expect("ca pem");
    let client = client.map(|(cert, key)| {
        (
            tether_shared::pki::certs_from_pem(cert.as_bytes()).expect("cert pem"),
            Arc::new(tether_shared::pki::key_from_pem(key.as_bytes()).expect("key pem")),
        )
    });
    let channel = transport::connect(&uri, &TlsMaterial { roots, client }).await?;
    Ok(AgentControlClient::new(channel))
}

/// A Hello message.
pub fn hello() -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Hello(Hello {
            version: "test".into(),
            ..Hello::default()
        })),
    }
}

/// Splits an `identity.pem` (certificate then key) into its two PEM parts.
pub fn split_identity(pem: &str) -> (String, String) {
    let idx = pem
        .find("-----BEGIN PRIVATE KEY-----")
        .expect("key in identity.pem");
    (pem[..idx].to_owned(), pem[idx..].to_owned())
}

/// Opens a session and sends Hello; returns the sender (drop it to end the session) and
/// the control plane's messages.
pub async fn open_session(
    client: &mut AgentControlClient<Channel>,
) -> Result<
    (
        tokio::sync::mpsc::Sender<AgentMessage>,
        tonic::Streaming<tether_proto::v1::ControlMessage>,
    ),
    tonic::Status,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let _ = tx.send(hello()).await;
    let inbound = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, inbound))
}

/// Enrolls over server-auth TLS with a fresh key; returns (certificate PEM, key PEM).
pub async fn enroll_raw(url: &str, ca_file: &Path, token: &str) -> (String, String) {
    let mut c = raw_client(url, ca_file, None)
        .await
        .expect("server-auth TLS");
    let (key, csr) = tether_shared::pki::key_and_csr("test-agent").expect("csr");
    let resp = c
        .enroll(tether_proto::v1::EnrollRequest {
            bootstrap_token: token.to_owned(),
            csr_pem: csr,
            ..Default::default()
        })
        .await
        .expect("enroll")
        .into_inner();
    (resp.certificate_pem, key)
}
