//! The gRPC `AgentControl` service the agents dial into.
//!
//! `Enroll` is the only RPC that accepts a connection without a client certificate; every
//! other RPC reads the agent's identity from the verified TLS client certificate and from
//! nowhere else.

pub mod telemetry;
pub mod tickets;
pub mod tls;

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tether_proto::v1::agent_control_server::AgentControl;
use tether_proto::v1::{
    self as pb, AgentMessage, ControlMessage, EnrollRequest, EnrollResponse,
    RenewCertificateRequest, RenewCertificateResponse, TelemetryAck, TelemetryBatch, agent_message,
    control_message,
};
use tether_shared::AgentIdentity;
use tether_shared::pki::CertificateInfo;
use tether_shared::tokens;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::admission::Decision;
use crate::sessions::reason;
use crate::state::AppState;
use crate::store::{NewCertificate, RedeemError, SessionStart, StoreError};

/// Limits on fields of requests, beyond the transport's message size limit.
const MAX_TOKEN_LEN: usize = 512;
const MAX_CSR_LEN: usize = 16 * 1024;
const MAX_VERSION_LEN: usize = 64;

/// The service implementation.
#[derive(Debug, Clone)]
pub struct AgentControlService {
    state: AppState,
}

impl AgentControlService {
    /// A service over the shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// The tonic server for this service, with message size limits.
    pub fn into_server(self) -> pb::agent_control_server::AgentControlServer<Self> {
        pb::agent_control_server::AgentControlServer::new(self)
            .max_decoding_message_size(tether_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(tether_proto::MAX_MESSAGE_BYTES)
    }
}

/// The authenticated caller of an mTLS RPC.
#[derive(Debug)]
struct Peer {
    identity: AgentIdentity,
    cert: CertificateInfo,
}

fn internal(e: StoreError) -> Status {
    match e {
        StoreError::Unavailable(detail) => {
            tracing::warn!(%detail, "store unavailable");
            Status::unavailable(STORE_UNAVAILABLE)
        }
        e => {
            tracing::error!(error = %e, "store failure");
            Status::internal("internal error; try again")
        }
    }
}

/// The message of a `Status::unavailable` for a store that cannot be reached (or whose
/// connections are all busy).
const STORE_UNAVAILABLE: &str = "the control plane's database is unavailable; try again";

/// A session start that failed because the store was unavailable (down, or every pooled
/// connection busy under a reconnect storm) is answered with `Goodbye{overloaded}` and a
/// `retry_after` spread over a few seconds, which the agent honours exactly without growing
/// its backoff — instead of an error whose retries back off ever longer.
fn overloaded_or(status: Status) -> Result<Response<ControlStream>, Status> {
    if status.code() == tonic::Code::Unavailable && status.message() == STORE_UNAVAILABLE {
        crate::metrics::METRICS
            .sessions_deferred_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bye = crate::sessions::goodbye(
            reason::OVERLOADED,
            "the control plane is busy; come back at the given time",
            1000 + rand::random::<u64>() % 4000,
        );
        return Ok(Response::new(Box::pin(tokio_stream::once(Ok(bye)))));
    }
    Err(status)
}

fn redeem_status(e: RedeemError) -> Status {
    match e {
        RedeemError::Unknown => Status::unauthenticated("enrollment token not recognised"),
        RedeemError::Used => Status::unauthenticated(
            "enrollment token already used; create a new one for this compute plane",
        ),
        RedeemError::Expired => Status::unauthenticated(
            "enrollment token expired; create a new one for this compute plane",
        ),
    }
}

fn check_len(field: &str, value: &str, max: usize, required: bool) -> Result<(), Status> {
    if required && value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    if value.len() > max {
        return Err(Status::invalid_argument(format!(
            "{field} is longer than {max} bytes"
        )));
    }
    Ok(())
}

impl AgentControlService {
    /// Reads the caller's identity from its TLS client certificate and checks that the
    /// certificate is still allowed (known, not revoked).
    async fn authenticate<T>(&self, req: &Request<T>) -> Result<Peer, Status> {
        self.authenticate_at_start(req, false).await
    }

    /// [`Self::authenticate`], and with `session_start` also that the certificate has not
    /// expired. rustls does not verify the client certificate again when a connection
    /// resumes a TLS session from a ticket, so a resumed connection may present a
    /// certificate that expired since; every session starts on a new connection, so the
    /// start is where to refuse it. (Later RPCs on a long-lived connection present the
    /// certificate it opened with, which renewals over the session outlive.)
    async fn authenticate_at_start<T>(
        &self,
        req: &Request<T>,
        session_start: bool,
    ) -> Result<Peer, Status> {
        let certs = req.peer_certs().ok_or_else(|| {
            Status::unauthenticated(
                "a client certificate issued by this control plane is required; enroll first",
            )
        })?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("empty client certificate chain"))?;
        let cert = CertificateInfo::from_der(leaf)
            .map_err(|_| Status::unauthenticated("unreadable client certificate"))?;
        let identity = cert
            .identity
            .clone()
            .ok_or_else(|| Status::unauthenticated("client certificate names no agent identity"))?;
        let allowed = self
            .state
            .store
            .certificate_allowed(&identity.compute_plane_id, &cert.serial)
            .await
            .map_err(internal)?;
        if !allowed {
            return Err(Status::permission_denied(
                "certificate revoked: create a new enrollment token and enroll this agent again",
            ));
        }
        if session_start && cert.not_after <= self.state.clock.now() {
            return Err(Status::unauthenticated(
                "certificate expired: create a new enrollment token and enroll this agent again",
            ));
        }
        Ok(Peer { identity, cert })
    }
}

impl AgentControlService {
    /// Account binding: when the tenant registered an AWS account (and did not turn the
    /// check off), the agent's signed identity must come back from STS with that account.
    async fn check_account(
        &self,
        cp: &crate::store::ComputePlane,
        token_hash: &str,
        identity: Option<&tether_proto::v1::SignedHttpRequest>,
    ) -> Result<(), Status> {
        if let Some(id) = identity {
            let size: usize = id.url.len()
                + id.body.len()
                + id.headers
                    .iter()
                    .map(|h| h.name.len() + h.value.len())
                    .sum::<usize>();
            if size > 16 * 1024 || id.headers.len() > 32 {
                return Err(Status::invalid_argument("aws_identity is too large"));
            }
        }
        let tenant = self
            .state
            .store
            .get_tenant(&cp.tenant_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::internal("the compute plane's tenant is gone"))?;
        let (Some(account), true) = (&tenant.aws_account_id, tenant.account_binding) else {
            return Ok(());
        };
        let b = &self.state.binding;
        match crate::account_binding::verify(
            &b.http,
            &b.sts_endpoint,
            account,
            token_hash,
            identity,
        )
        .await
        {
            Ok(_) => {
                tracing::info!(compute_plane = %cp.id, account = %account, "agent's AWS account verified with STS");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(compute_plane = %cp.id, "enrollment refused: {e}");
                Err(e.status())
            }
        }
    }

    /// Signs `csr_pem` for `identity` and returns the certificate with its store record.
    fn issue(
        &self,
        csr_pem: &str,
        identity: &AgentIdentity,
        now: i64,
    ) -> Result<(crate::ca::Issued, NewCertificate), Status> {
        let issued = self
            .state
            .ca
            .sign_agent(csr_pem, identity, self.state.settings.agent_cert_ttl)
            .map_err(|e| Status::invalid_argument(format!("invalid CSR: {e}")))?;
        let record = NewCertificate {
            serial: issued.serial.clone(),
            issued_at: now,
            expires_at: issued.not_after,
        };
        Ok((issued, record))
    }
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<ControlMessage, Status>> + Send>>;
type TelemetryAckStream = Pin<Box<dyn Stream<Item = Result<TelemetryAck, Status>> + Send>>;

#[tonic::async_trait]
impl AgentControl for AgentControlService {
    #[tracing::instrument(skip_all, fields(remote = ?req.remote_addr()))]
    async fn enroll(
        &self,
        req: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let r = req.into_inner();
        check_len("bootstrap_token", &r.bootstrap_token, MAX_TOKEN_LEN, true)?;
        check_len("csr_pem", &r.csr_pem, MAX_CSR_LEN, true)?;
        check_len("agent_version", &r.agent_version, MAX_VERSION_LEN, false)?;
        let hash = tokens::hash(&r.bootstrap_token);
        let now = self.state.clock.now();
        let cp = self
            .state
            .store
            .peek_enrollment_token(&hash, now)
            .await
            .map_err(internal)?
            .map_err(redeem_status)?;
        if !r.expected_compute_plane_id.is_empty() && r.expected_compute_plane_id != cp.id {
            return Err(Status::permission_denied(format!(
                "this enrollment token belongs to another compute plane, not {}",
                r.expected_compute_plane_id
            )));
        }
        self.check_account(&cp, &hash, r.aws_identity.as_ref())
            .await?;
        let identity = AgentIdentity {
            tenant_id: cp.tenant_id.clone(),
            compute_plane_id: cp.id,
        };
        let (issued, record) = self.issue(&r.csr_pem, &identity, now)?;
        self.state
            .store
            .redeem_enrollment_token(&hash, &record, now)
            .await
            .map_err(internal)?
            .map_err(redeem_status)?;
        tracing::info!(%identity, serial = %issued.serial, version = %r.agent_version, "agent enrolled");
        Ok(Response::new(EnrollResponse {
            certificate_pem: issued.pem,
            ca_pem: self.state.ca.ca_pem().to_owned(),
            identity: Some(pb::AgentIdentity {
                tenant_id: identity.tenant_id,
                compute_plane_id: identity.compute_plane_id,
            }),
            not_after_unix: issued.not_after,
            serial: issued.serial,
            desired_state_signing_key_pem: self.state.signer.public().to_pem(),
        }))
    }

    type SessionStream = ControlStream;

    #[tracing::instrument(skip_all, fields(remote = ?req.remote_addr()))]
    async fn session(
        &self,
        req: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let peer = match self.authenticate_at_start(&req, true).await {
            Ok(p) => p,
            Err(status) => return overloaded_or(status),
        };
        let cp_id = peer.identity.compute_plane_id.clone();
        if self.state.fleet.is_draining() {
            let bye = crate::sessions::goodbye(
                reason::DRAINING,
                "this control-plane replica is stopping; connect to another",
                self.state.fleet.draining_retry_after_ms(),
            );
            return Ok(Response::new(Box::pin(tokio_stream::once(Ok(bye)))));
        }
        match self.state.admission.admit(&cp_id) {
            Decision::Wait(d) if d.is_zero() => {}
            Decision::Wait(d) => tokio::time::sleep(d).await,
            Decision::RetryAfter(after) => {
                crate::metrics::METRICS
                    .sessions_deferred_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(compute_plane = %cp_id, retry_after_ms = after.as_millis() as u64, "session start deferred");
                let bye = crate::sessions::goodbye(
                    reason::OVERLOADED,
                    "too many agents are connecting at once; come back at the given time",
                    after.as_millis().max(1) as u64,
                );
                return Ok(Response::new(Box::pin(tokio_stream::once(Ok(bye)))));
            }
        }
        let remote = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut inbound = req.into_inner();
        let settings = &self.state.settings;
        let hello = match tokio::time::timeout(settings.hello_timeout, inbound.message()).await {
            Ok(Ok(Some(AgentMessage {
                kind: Some(agent_message::Kind::Hello(h)),
            }))) => h,
            Ok(Ok(Some(_))) => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be Hello",
                ));
            }
            Ok(Ok(None)) => return Err(Status::cancelled("stream closed before Hello")),
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no Hello in time")),
        };
        check_len("hello.version", &hello.version, MAX_VERSION_LEN, false)?;

        let session_id = uuid::Uuid::new_v4().to_string();
        let (telemetry_acked, _) = match self.state.store.telemetry_state(&cp_id).await {
            Ok(t) => t,
            Err(e) => return overloaded_or(internal(e)),
        };
        let (tx, rx) = mpsc::channel::<Box<ControlMessage>>(64);
        let welcome = ControlMessage {
            kind: Some(control_message::Kind::Welcome(pb::Welcome {
                heartbeat_interval_seconds: settings.heartbeat_interval.as_secs().max(1) as u32,
                telemetry_acked_seq: telemetry_acked,
                session_id: session_id.clone(),
                identity: Some(pb::AgentIdentity {
                    tenant_id: peer.identity.tenant_id.clone(),
                    compute_plane_id: cp_id.clone(),
                }),
                server_time_unix_ms: tether_shared::timestamps::now_unix_ms(),
                desired_state_signing_key_pem: self.state.signer.public().to_pem(),
                signing_key_statements: self.state.signer.chain().to_vec(),
            })),
        };
        if hello.probe {
            tracing::info!(identity = %peer.identity, %remote, "answered a doctor's probe");
            let bye = crate::sessions::goodbye(reason::PROBE, "probe answered", 0);
            return Ok(Response::new(Box::pin(tokio_stream::iter([
                Ok(welcome),
                Ok(bye),
            ]))));
        }
        tx.try_send(Box::new(welcome))
            .map_err(|_| Status::internal("session channel"))?;
        let reg = self
            .state
            .sessions
            .register(&cp_id, &session_id, tx, peer.cert.not_after);
        let start = SessionStart {
            session_id: session_id.clone(),
            at: self.state.clock.now(),
            version: hello.version.clone(),
            remote_addr: remote.clone(),
            replica: self.state.fleet.replica().to_owned(),
        };
        if let Err(e) = self
            .state
            .fleet
            .session_started(&self.state, &cp_id, start)
            .await
        {
            self.state.sessions.deregister(&cp_id, &session_id);
            return Err(internal(e));
        }
        tracing::info!(identity = %peer.identity, %session_id, version = %hello.version, %remote, "session started");
        // Registered first, then pushed: a change racing this start is pushed again by its
        // writer, and the agent ignores generations older than the one it has.
        crate::desired::push_local(&self.state, &cp_id).await;
        crate::support::push_local(&self.state, &cp_id).await;
        tokio::spawn(read_session(
            self.state.clone(),
            cp_id,
            session_id,
            inbound,
            reg,
        ));
        Ok(Response::new(Box::pin(
            ReceiverStream::new(rx).map(|m| Ok(*m)),
        )))
    }

    type TelemetryStream = TelemetryAckStream;

    async fn telemetry(
        &self,
        req: Request<Streaming<TelemetryBatch>>,
    ) -> Result<Response<Self::TelemetryStream>, Status> {
        let peer = self.authenticate(&req).await?;
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(telemetry::serve(
            self.state.clone(),
            peer.identity.compute_plane_id,
            req.into_inner(),
            tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(skip_all, fields(remote = ?req.remote_addr()))]
    async fn send_support_bundle(
        &self,
        req: Request<pb::SupportBundle>,
    ) -> Result<Response<pb::SupportBundleAck>, Status> {
        let peer = self.authenticate(&req).await?;
        crate::support::receive(
            &self.state,
            &peer.identity.tenant_id,
            &peer.identity.compute_plane_id,
            req.into_inner(),
        )
        .await?;
        Ok(Response::new(pb::SupportBundleAck {}))
    }

    #[tracing::instrument(skip_all, fields(remote = ?req.remote_addr()))]
    async fn renew_certificate(
        &self,
        req: Request<RenewCertificateRequest>,
    ) -> Result<Response<RenewCertificateResponse>, Status> {
        let peer = self.authenticate(&req).await?;
        let r = req.into_inner();
        check_len("csr_pem", &r.csr_pem, MAX_CSR_LEN, true)?;
        let (issued, record) = self.issue(&r.csr_pem, &peer.identity, self.state.clock.now())?;
        self.state
            .store
            .record_certificate(&peer.identity.compute_plane_id, &record)
            .await
            .map_err(internal)?;
        self.state
            .sessions
            .certificate_renewed(&peer.identity.compute_plane_id, issued.not_after);
        tracing::info!(identity = %peer.identity, old = %peer.cert.serial, new = %issued.serial, "certificate renewed");
        Ok(Response::new(RenewCertificateResponse {
            certificate_pem: issued.pem,
            not_after_unix: issued.not_after,
            serial: issued.serial,
        }))
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_or_forever(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Counts a message received from an agent.
fn counted(kind: Option<agent_message::Kind>) -> Option<agent_message::Kind> {
    crate::metrics::METRICS
        .agent_messages_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    kind
}

/// Reads one session's inbound messages until the agent leaves, the session is ended from
/// outside, it goes idle, or its certificate expires without renewal.
async fn read_session(
    state: AppState,
    cp_id: String,
    session_id: String,
    mut inbound: Streaming<AgentMessage>,
    mut reg: crate::sessions::Registration,
) {
    let idle = state.settings.idle_timeout;
    // A session older than the maximum age (± 20 %, so agents do not all leave at once)
    // ends with Goodbye{rebalance}: agents spread over the replicas again.
    let rebalance_at = state.fleet.settings().max_session_age.map(|age| {
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        tokio::time::Instant::now() + age.mul_f64(jitter)
    });
    let why: &str = loop {
        let expiry = *reg.cert_expiry.borrow();
        let left = Duration::from_secs((expiry - state.clock.now()).max(0) as u64);
        tokio::select! {
            msg = tokio::time::timeout(idle, inbound.message()) => match msg {
                Ok(Ok(Some(m))) => match counted(m.kind) {
                    Some(agent_message::Kind::Heartbeat(_)) => {
                        state.presence.heartbeat(&cp_id, &session_id, state.clock.now());
                    }
                    Some(agent_message::Kind::Goodbye(g)) => {
                        tracing::info!(%session_id, reason = %g.reason, "agent said goodbye");
                        break "agent left";
                    }
                    Some(agent_message::Kind::Hello(_)) => {
                        tracing::warn!(%session_id, "ignoring a second Hello");
                    }
                    Some(agent_message::Kind::Applied(a)) => {
                        crate::status::record_applied(&state, &cp_id, &session_id, &a);
                    }
                    Some(agent_message::Kind::Status(st)) => {
                        crate::status::record_status(&state, &cp_id, st).await;
                    }
                    _ => {}
                },
                Ok(Ok(None)) => break "stream closed by agent",
                Ok(Err(status)) => {
                    tracing::debug!(%session_id, %status, "session stream error");
                    break "stream error";
                }
                Err(_) => {
                    state.sessions.end_if_current(&cp_id, &session_id, reason::IDLE, "no message within the idle timeout");
                    break "idle timeout";
                }
            },
            _ = reg.stop.changed() => break "ended by control plane",
            changed = reg.cert_expiry.changed() => {
                if changed.is_err() {
                    break "ended by control plane";
                }
            }
            () = tokio::time::sleep(left) => {
                state.sessions.end_if_current(&cp_id, &session_id, reason::CERTIFICATE_EXPIRED, "the session's certificate expired without renewal");
                break "certificate expired";
            }
            () = sleep_until_or_forever(rebalance_at) => {
                state.sessions.end_if_current(&cp_id, &session_id, reason::REBALANCE, "the session reached its maximum age; reconnect");
                break "maximum session age";
            }
        }
    };
    state.sessions.deregister(&cp_id, &session_id);
    state.presence.disconnected(&cp_id, &session_id);
    tracing::info!(compute_plane_id = %cp_id, %session_id, why, "session ended");
}
