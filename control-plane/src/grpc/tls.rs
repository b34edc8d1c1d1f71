//! TLS for the gRPC port: TLS 1.3 preferred, 1.2 minimum, never plaintext. A client
//! certificate is optional at the handshake (so `Enroll` can run with only the bootstrap
//! token), but when one is presented it must chain to the internal CA; every RPC except
//! `Enroll` then insists on one. Handshakes run concurrently with a deadline, off the
//! accept loop, so a slow or hostile client cannot stall others.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// How long a client may take to finish the TLS handshake (its wait for a slot included).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once. A handshake is CPU work (signatures, key exchange);
/// beyond a few per core, more at once only make every one of them slower, until under a
/// reconnect storm all of them miss their deadline together. The rest queue in order.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 64;

/// Builds the server configuration from the CA (trusted for client certificates), the
/// server's own certificate and key (PEM / PKCS#8 DER), and the fleet's ticket secret
/// (TLS 1.3 resumption on any replica, see [`super::tickets`]).
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pkcs8_der: Vec<u8>,
    ticket_secret: &[u8],
) -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error + Send + Sync>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in tether_shared::pki::certs_from_pem(ca_pem.as_bytes())? {
        roots.add(cert)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain: Vec<CertificateDer<'static>> =
        tether_shared::pki::certs_from_pem(cert_pem.as_bytes())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8_der));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.ticketer = Arc::new(super::tickets::SharedTicketer::new(ticket_secret));
    // Stateless tickets only: resumption must work on every replica, not only this one.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// Accepts TCP connections on `listener` and yields finished TLS streams.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(128);
    let acceptor = TlsAcceptor::from(config);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = tx.closed() => return,
            };
            let (tcp, addr) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let slots = slots.clone();
            tokio::spawn(async move {
                let handshake = async {
                    let _slot = match slots.try_acquire() {
                        Ok(p) => p,
                        Err(_) => {
                            crate::metrics::METRICS
                                .handshakes_queued_total
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            slots.acquire().await.map_err(std::io::Error::other)?
                        }
                    };
                    acceptor.accept(tcp).await
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(tls)) => {
                        let counter = match tls.get_ref().1.handshake_kind() {
                            Some(rustls::HandshakeKind::Resumed) => {
                                &crate::metrics::METRICS.handshakes_resumed_total
                            }
                            _ => &crate::metrics::METRICS.handshakes_full_total,
                        };
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::info!(peer = %addr, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(peer = %addr, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
