//! One session: dial, say Hello, get Welcome, then heartbeat, renew the certificate at
//! two thirds of its lifetime over the same connection, and follow the control plane's
//! messages until it says Goodbye, the stream breaks, or the agent is told to stop.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::Uri;
use tether_proto::v1::agent_control_client::AgentControlClient;
use tether_proto::v1::{
    self as pb, AgentMessage, ControlMessage, RenewCertificateRequest, agent_message,
    control_message,
};
use tether_shared::pki;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::desired::{Accepted, DesiredStore, Refusal};
use crate::enroll::AGENT_VERSION;
use crate::error::AgentError;
use crate::identity_store::{Credentials, StateDir};
use crate::report::Report;
use crate::telemetry::Telemetry;
use crate::transport::{self, TlsMaterial};

/// How long the control plane may take to answer Hello.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait before retrying a failed renewal.
const RENEW_RETRY: Duration = Duration::from_secs(5);

/// How a session ended without an error.
#[derive(Debug)]
pub enum SessionEnd {
    /// The agent was told to stop.
    Shutdown,
    /// The control plane said Goodbye.
    Goodbye {
        /// Machine-readable reason.
        reason: String,
        /// Human-readable message.
        message: String,
        /// Do not reconnect sooner than this.
        retry_after: Duration,
    },
    /// The stream ended without a Goodbye.
    Closed,
}

fn msg(kind: agent_message::Kind) -> AgentMessage {
    AgentMessage { kind: Some(kind) }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The instant at which to renew `creds`.
fn renew_instant(creds: &Credentials) -> Instant {
    let secs = (creds.info.renew_at() - unix_now()).max(0) as u64;
    Instant::now() + Duration::from_secs(secs)
}

/// Maps a refusal of the session to what the agent should do about it.
pub fn classify(status: tonic::Status) -> AgentError {
    match status.code() {
        tonic::Code::PermissionDenied => AgentError::Revoked(status.message().to_owned()),
        tonic::Code::Unauthenticated => AgentError::Refused(status.message().to_owned()),
        _ => AgentError::from(status),
    }
}

/// First pause before a telemetry stream the control plane ended is opened again.
const TELEMETRY_RETRY_MIN: Duration = Duration::from_millis(500);
/// Longest pause between telemetry stream attempts within a session.
const TELEMETRY_RETRY_MAX: Duration = Duration::from_secs(10);

/// Runs one session to its end.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    control_plane: &Uri,
    roots: &[rustls_pki_types::CertificateDer<'static>],
    state: &StateDir,
    creds: &mut Credentials,
    desired: &DesiredStore,
    report: &mut watch::Receiver<Report>,
    telemetry: &Telemetry,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<SessionEnd, AgentError> {
    let tls = TlsMaterial {
        roots: roots.to_vec(),
        client: Some((creds.chain.clone(), creds.key.clone())),
    };
    let channel = transport::connect(control_plane, &tls).await?;
    let mut client = AgentControlClient::new(channel)
        .max_decoding_message_size(tether_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(tether_proto::MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel(16);
    let hello = pb::Hello {
        version: AGENT_VERSION.to_owned(),
        capabilities: vec![
            "session.v1".to_owned(),
            "renew.v1".to_owned(),
            "desired-state.v1".to_owned(),
        ],
        applied_generation: report.borrow().applied_generation,
        telemetry_next_seq: 0,
        certificate_serial: creds.info.serial.clone(),
        probe: false,
    };
    let _ = tx.send(msg(agent_message::Kind::Hello(hello))).await;
    let mut inbound = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(classify)?
        .into_inner();
    let welcome = match tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(ControlMessage {
            kind: Some(control_message::Kind::Welcome(w)),
        }))) => w,
        Ok(Ok(Some(ControlMessage {
            kind: Some(control_message::Kind::Goodbye(g)),
        }))) => {
            return Ok(goodbye(g));
        }
        Ok(Ok(_)) => return Ok(SessionEnd::Closed),
        Ok(Err(status)) => return Err(classify(status)),
        Err(_) => {
            return Err(AgentError::Rpc {
                code: tonic::Code::DeadlineExceeded,
                message: "no Welcome from the control plane".into(),
            });
        }
    };
    if let Err(e) = desired.follow(
        &welcome.desired_state_signing_key_pem,
        &welcome.signing_key_statements,
    ) {
        tracing::error!("cannot keep the control plane's signing key: {e}");
    }
    let hb_every = Duration::from_secs(u64::from(welcome.heartbeat_interval_seconds.max(1)));
    let _up = SessionUp::new();
    tracing::info!(
        session_id = %welcome.session_id,
        compute_plane_id = welcome.identity.as_ref().map(|i| i.compute_plane_id.as_str()).unwrap_or(""),
        heartbeat_interval_s = hb_every.as_secs(),
        certificate_serial = %creds.info.serial,
        "connected to control plane"
    );
    let mut heartbeat = tokio::time::interval_at(Instant::now() + hb_every, hb_every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Telemetry on its own stream of the same connection, for as long as this session.
    // A stream the control plane ends (its database unavailable, say) is opened again
    // after a pause that grows to TELEMETRY_RETRY_MAX; the spool keeps everything meanwhile
    // and the new stream resends what was not acked.
    let uplink = {
        let t = telemetry.clone();
        let c = client.clone();
        let acked = welcome.telemetry_acked_seq;
        AbortOnDrop(tokio::spawn(async move {
            let mut pause = TELEMETRY_RETRY_MIN;
            loop {
                let opened = Instant::now();
                let ended = t.uplink(c.clone(), acked).await;
                if opened.elapsed() > TELEMETRY_RETRY_MAX {
                    pause = TELEMETRY_RETRY_MIN;
                }
                // Ended by the control plane, cleanly or not: this task lives as long as
                // the session (it is aborted with it), so open the stream again.
                match ended {
                    Ok(()) => tracing::info!(
                        retry_in_ms = pause.as_millis() as u64,
                        "telemetry stream closed by the control plane"
                    ),
                    Err(status) => {
                        tracing::warn!(%status, retry_in_ms = pause.as_millis() as u64, "telemetry stream ended")
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(TELEMETRY_RETRY_MAX);
            }
        }))
    };
    let _uplink = uplink;
    let mut renew_at = renew_instant(creds);
    // What this session has told the control plane, so only changes are sent.
    let mut sent = Report::default();
    let mut reports_open = true;
    // The last document this agent refused (pushed, or found in its state dir at start),
    // reported until a valid one arrives.
    let mut refused: Option<pb::ClusterCondition> = match desired.load_refusal() {
        Some(r) if desired.generation() == 0 => Some(refusal_condition(0, r)),
        _ => None,
    };
    crate::audit::record(
        "session.opened",
        serde_json::json!({"session_id": welcome.session_id, "control_plane": control_plane.to_string(), "certificate_serial": creds.info.serial}),
    );
    let end = async {
    let current = report.borrow_and_update().clone();
    if send_report(
        &tx,
        &mut sent,
        with_refusal(current, &refused, ack_floor(desired)),
    )
    .await
    .is_err()
    {
        return Ok(SessionEnd::Closed);
    }
    loop {
        tokio::select! {
            m = inbound.message() => match m {
                Ok(Some(ControlMessage { kind: Some(kind) })) => match counted(kind) {
                    control_message::Kind::Goodbye(g) => return Ok(goodbye(g)),
                    control_message::Kind::RotateCertificate(r) => {
                        tracing::info!(reason = %r.reason, "control plane asked for a new certificate");
                        renew_at = Instant::now();
                    }
                    control_message::Kind::DesiredState(d) => {
                        match accept_desired_state(desired, d) {
                            Verdict::Refused(c) => refused = Some(c),
                            Verdict::Accepted => refused = None,
                            Verdict::NotNewer => {}
                        }
                        let current = report.borrow().clone();
                        if send_report(&tx, &mut sent, with_refusal(current, &refused, ack_floor(desired))).await.is_err() {
                            return Ok(SessionEnd::Closed);
                        }
                    }
                    control_message::Kind::Command(c) => {
                        tracing::info!(command = %c.name, "command received; not supported by this agent version");
                    }
                    control_message::Kind::SupportRequest(r) => crate::support::deliver(r),
                    control_message::Kind::Welcome(_) => {}
                },
                Ok(Some(ControlMessage { kind: None })) => {}
                Ok(None) => return Ok(SessionEnd::Closed),
                Err(status) => return Err(classify(status)),
            },
            changed = report.changed(), if reports_open => {
                if changed.is_ok() {
                    let current = report.borrow_and_update().clone();
                    if send_report(&tx, &mut sent, with_refusal(current, &refused, ack_floor(desired))).await.is_err() {
                        return Ok(SessionEnd::Closed);
                    }
                } else {
                    // No reconciler any more: stop listening rather than spin.
                    reports_open = false;
                }
            }
            _ = heartbeat.tick() => {
                let hb = pb::Heartbeat { sent_at_unix_ms: tether_shared::timestamps::now_unix_ms() };
                if tx.send(msg(agent_message::Kind::Heartbeat(hb))).await.is_err() {
                    return Ok(SessionEnd::Closed);
                }
            }
            () = tokio::time::sleep_until(renew_at) => {
                match renew(&mut client, state).await {
                    Ok(new) => {
                        tracing::info!(old = %creds.info.serial, new = %new.info.serial, expires_at = new.info.not_after, "certificate renewed");
                        crate::audit::record("certificate.renewed", serde_json::json!({"old_serial": creds.info.serial, "new_serial": new.info.serial, "expires_at": new.info.not_after}));
                        *creds = new;
                        renew_at = renew_instant(creds);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "certificate renewal failed; retrying");
                        renew_at = Instant::now() + RENEW_RETRY;
                    }
                }
            }
            _ = shutdown.changed() => {
                let bye = pb::AgentGoodbye { reason: "agent shutting down".into() };
                let _ = tx.send(msg(agent_message::Kind::Goodbye(bye))).await;
                drop(tx);
                // Let the control plane close its side so the goodbye is not cut off.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Ok(Some(_)) = inbound.message().await {}
                })
                .await;
                return Ok(SessionEnd::Shutdown);
            }
        }
    }
    }
    .await;
    let reason = match &end {
        Ok(SessionEnd::Goodbye {
            reason, message, ..
        }) => format!("{reason}: {message}"),
        Ok(SessionEnd::Closed) => "closed".to_owned(),
        Ok(SessionEnd::Shutdown) => "agent shutting down".to_owned(),
        Err(e) => e.to_string(),
    };
    crate::audit::record(
        "session.ended",
        serde_json::json!({"session_id": welcome.session_id, "reason": reason}),
    );
    end
}

/// What became of a pushed document.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Kept; the reconciler applies it.
    Accepted,
    /// Not newer than the one the agent has.
    NotNewer,
    /// Refused: the condition the control plane is told.
    Refused(pb::ClusterCondition),
}

/// The type of the compute-plane condition that reports a refused document.
pub const REFUSED_CONDITION: &str = "DesiredStateRefused";

/// Verifies, validates and keeps a pushed desired state. A document that is unsigned,
/// signed by another key or for another compute plane, or invalid (the control plane
/// validated it too, so a version skew, a bug or tampering) is refused: nothing of it is
/// applied, the clusters stay as they are, and the refusal becomes a compute-plane
/// condition (`DesiredStateRefused`, with the generation and the reason) in the `Applied`
/// report. One older than the document held is not applied either; pushes can overtake
/// one another, so that is no condition.
fn accept_desired_state(desired: &DesiredStore, d: pb::DesiredState) -> Verdict {
    let generation = d.generation;
    let key_id = d.signature_key_id.clone();
    let audit = |action: &str, extra: serde_json::Value| {
        let mut fields = serde_json::json!({"generation": generation, "signature_key_id": key_id});
        if let (Some(f), serde_json::Value::Object(e)) = (fields.as_object_mut(), extra) {
            f.extend(e);
        }
        crate::audit::record(action, fields);
    };
    match desired.accept(d) {
        Ok(Accepted::Newer) => {
            tracing::info!(generation, "desired state accepted");
            audit("desired_state.accepted", serde_json::json!({}));
            Verdict::Accepted
        }
        Ok(Accepted::Same) => Verdict::NotNewer,
        Err(Refusal::Rollback { applied, .. }) => {
            tracing::warn!(
                generation,
                applied,
                "desired state older than the one applied; not applied"
            );
            audit(
                "desired_state.ignored",
                serde_json::json!({"reason": "older than the one applied", "applied": applied}),
            );
            Verdict::NotNewer
        }
        Err(refusal) => {
            tracing::error!(generation, "refusing desired state: {refusal}");
            audit(
                "desired_state.refused",
                serde_json::json!({"reason": refusal.reason(), "message": refusal.to_string()}),
            );
            Verdict::Refused(refusal_condition(generation, &refusal))
        }
    }
}

/// The compute-plane condition that reports a refused document.
pub fn refusal_condition(generation: i64, refusal: &Refusal) -> pb::ClusterCondition {
    let message = format!("generation {generation} refused: {refusal}");
    pb::ClusterCondition {
        cluster: String::new(),
        r#type: REFUSED_CONDITION.into(),
        status: "True".into(),
        reason: refusal.reason().into(),
        message: message.chars().take(512).collect(),
        last_transition_unix_ms: tether_shared::timestamps::now_unix_ms(),
    }
}

/// What a report with a refusal acks at least: with no document held (the one in the
/// state dir was refused at start), the generation the clusters were last set to; else
/// nothing beyond what the reconciler applied.
fn ack_floor(desired: &DesiredStore) -> i64 {
    if desired.generation() == 0 {
        desired.highest_accepted()
    } else {
        0
    }
}

/// The report with the refusal, if any, among its conditions. With a refusal it acks at
/// least `highest` (the generation the clusters were last set to): the control plane
/// keeps conditions of older acks out, and a refusal at start holds no document at all.
fn with_refusal(
    mut report: Report,
    refused: &Option<pb::ClusterCondition>,
    highest: i64,
) -> Report {
    if refused.is_some() {
        report.applied_generation = report.applied_generation.max(highest);
    }
    report.conditions.extend(refused.iter().cloned());
    report
}

/// Sends what changed in the report since `sent`.
async fn send_report(
    tx: &mpsc::Sender<AgentMessage>,
    sent: &mut Report,
    current: Report,
) -> Result<(), ()> {
    if current.applied_generation != sent.applied_generation
        || current.conditions != sent.conditions
    {
        tx.send(current.applied()).await.map_err(|_| ())?;
        if current.applied_generation != sent.applied_generation {
            crate::audit::record(
                "desired_state.applied",
                serde_json::json!({"generation": current.applied_generation}),
            );
        }
    }
    if current.clusters != sent.clusters {
        tx.send(current.status()).await.map_err(|_| ())?;
    }
    *sent = current;
    Ok(())
}

/// Counts a received control message.
fn counted(kind: control_message::Kind) -> control_message::Kind {
    crate::metrics::METRICS
        .control_messages_total
        .fetch_add(1, Ordering::Relaxed);
    kind
}

/// Marks the session up in the metrics while it lives.
struct SessionUp;

impl SessionUp {
    fn new() -> Self {
        crate::metrics::METRICS
            .session_up
            .store(1, Ordering::Relaxed);
        crate::metrics::METRICS
            .sessions_total
            .fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for SessionUp {
    fn drop(&mut self) {
        crate::metrics::METRICS
            .session_up
            .store(0, Ordering::Relaxed);
    }
}

/// Aborts a task when dropped (the session's helpers end with it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn goodbye(g: pb::Goodbye) -> SessionEnd {
    SessionEnd::Goodbye {
        reason: g.reason,
        message: g.message,
        retry_after: Duration::from_millis(g.retry_after_ms),
    }
}

/// Renews over the live channel with a new key; the new credentials are on disk before
/// this returns.
async fn renew(
    client: &mut AgentControlClient<Channel>,
    state: &StateDir,
) -> Result<Credentials, AgentError> {
    let (key_pem, csr_pem) =
        pki::key_and_csr("tether-agent").map_err(|e| AgentError::Config(e.to_string()))?;
    let resp = client
        .renew_certificate(RenewCertificateRequest { csr_pem })
        .await
        .map_err(classify)?
        .into_inner();
    Ok(state.save(&resp.certificate_pem, &key_pem)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_document_is_a_condition_and_changes_nothing() {
        use crate::desired::tests::{key, signed};
        let k = key();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DesiredStore::open(dir.path(), "cp-1").expect("store");
        store.pin(k.public().clone()).expect("pin");
        let good = signed(&k, "cp-1", 3);
        assert_eq!(
            accept_desired_state(&store, good.clone()),
            Verdict::Accepted
        );
        let mut bad = pb::DesiredState {
            generation: 4,
            clusters: vec![pb::NamedSpec {
                name: "etl".into(),
                spec_json: r#"{"presto_version": "0.293", "workers": {"count": 1}, "gpu": true}"#
                    .into(),
            }],
            ..pb::DesiredState::default()
        };
        k.sign_desired_state("cp-1", &mut bad);
        let Verdict::Refused(c) = accept_desired_state(&store, bad) else {
            panic!("an unknown field is refused");
        };
        assert_eq!(c.r#type, REFUSED_CONDITION);
        assert_eq!(c.reason, "Invalid");
        assert!(c.cluster.is_empty(), "a compute-plane condition");
        assert!(
            c.message.contains("generation 4") && c.message.contains("gpu"),
            "{}",
            c.message
        );
        let Verdict::Refused(c) = accept_desired_state(&store, signed(&key(), "cp-1", 5)) else {
            panic!("another key's document is refused");
        };
        assert_eq!(c.reason, "BadSignature");
        let mut unsigned = signed(&k, "cp-1", 6);
        unsigned.signature.clear();
        let Verdict::Refused(c) = accept_desired_state(&store, unsigned) else {
            panic!("an unsigned document is refused");
        };
        assert!(c.message.contains("not signed"), "{}", c.message);
        assert_eq!(
            store.subscribe().borrow().as_ref().map(|d| d.generation),
            Some(3),
            "the refused documents were not taken"
        );
        let report = with_refusal(Report::default(), &Some(c), ack_floor(&store));
        assert_eq!(
            report.applied_generation, 0,
            "a document is held: only what was applied"
        );
        assert!(
            report
                .conditions
                .iter()
                .any(|c| c.r#type == REFUSED_CONDITION)
        );
        assert_eq!(
            accept_desired_state(&store, good),
            Verdict::NotNewer,
            "an equal one is nothing new"
        );
        assert_eq!(
            accept_desired_state(&store, signed(&k, "cp-1", 2)),
            Verdict::NotNewer,
            "an older one is not applied"
        );
        assert_eq!(store.generation(), 3);
    }
}
