//! Simulated agents: real mTLS sessions speaking the real protocol with the agent's own
//! connection code (`tether_agent::transport`), without Kubernetes. Each acks every desired
//! state at once, heartbeats at the interval the control plane asks for, and reconnects
//! with the agent's backoff (full jitter) when its session ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tether_agent::retry::{Retry, RetryPolicy};
use tether_agent::transport::{self, TlsMaterial};
use tether_proto::v1::agent_control_client::AgentControlClient;
use tether_proto::v1::{AgentMessage, Applied, Heartbeat, Hello, agent_message, control_message};
use tokio::sync::{Notify, mpsc, watch};
use tonic::transport::Channel;

/// One enrolled identity.
#[derive(Clone)]
pub struct Identity {
    /// Tenant id.
    pub tenant_id: String,
    /// Compute plane id.
    pub cp_id: String,
    /// Client certificate and key for the channel.
    pub tls: Arc<TlsMaterial>,
    /// Its TLS client configuration, kept across reconnects as the real agent keeps its
    /// own, so that a reconnect resumes with a session ticket.
    pub config: Arc<rustls::ClientConfig>,
}

/// What every simulated agent reports, shared.
#[derive(Default)]
pub struct Fleet {
    /// Sessions currently welcomed.
    pub live: AtomicUsize,
    /// Welcomes received in total.
    pub welcomes: AtomicU64,
    /// Desired-state documents received in total.
    pub pushes: AtomicU64,
    /// Wakes waiters on any push.
    pub pushed: Notify,
    /// Why sessions failed or ended, by stage (connect error kind, RPC status code,
    /// Goodbye reason).
    pub failures: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Fleet {
    fn failed(&self, why: String) {
        if let Ok(mut f) = self.failures.lock() {
            *f.entry(why).or_default() += 1;
        }
    }

    /// The failure counts so far, as `kind=count` pairs.
    pub fn failure_summary(&self) -> String {
        self.failures
            .lock()
            .map(|f| {
                f.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    }
}

/// Per agent: pushes received, and when the last one arrived.
#[derive(Default)]
pub struct AgentStats {
    /// Desired-state documents received.
    pub pushes: AtomicU64,
    /// Nanoseconds since `epoch` of the last push.
    pub last_push_ns: AtomicU64,
}

/// A client channel for `id` to `url`.
pub async fn channel(
    url: &http::Uri,
    id: &Identity,
) -> Result<AgentControlClient<Channel>, String> {
    let ch = transport::connect_with(url, id.config.clone())
        .await
        .map_err(|e| e.to_string())?;
    Ok(AgentControlClient::new(ch)
        .max_decoding_message_size(tether_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(tether_proto::MAX_MESSAGE_BYTES))
}

/// Runs one simulated agent until `stop`: connect, Hello, ack pushes, heartbeat; on any
/// end, back off and connect again — to the next of `urls`, as the real agent does.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    urls: Arc<Vec<http::Uri>>,
    id: Identity,
    fleet: Arc<Fleet>,
    stats: Arc<AgentStats>,
    epoch: Instant,
    retry: RetryPolicy,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Retry::new(retry);
    let mut at = rand::random::<u32>() as usize;
    loop {
        if *stop.borrow() {
            return;
        }
        let url = &urls[at % urls.len().max(1)];
        at = at.wrapping_add(1);
        let (welcomed, retry_after) = session(url, &id, &fleet, &stats, epoch, &mut stop).await;
        if welcomed {
            backoff.reset();
        }
        let delay = match retry_after {
            Some(after) => backoff.after_goodbye(after),
            None => backoff.next_delay(),
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// One session; whether it was welcomed, and the `retry_after` of its Goodbye if it got one.
async fn session(
    url: &http::Uri,
    id: &Identity,
    fleet: &Fleet,
    stats: &AgentStats,
    epoch: Instant,
    stop: &mut watch::Receiver<bool>,
) -> (bool, Option<Duration>) {
    let mut client = match channel(url, id).await {
        Ok(c) => c,
        Err(e) => {
            let kind = e.split([':', ' ']).take(4).collect::<Vec<_>>().join(" ");
            fleet.failed(format!("connect[{kind}]"));
            return (false, None);
        }
    };
    let (tx, rx) = mpsc::channel::<AgentMessage>(4);
    let hello = AgentMessage {
        kind: Some(agent_message::Kind::Hello(Hello {
            version: "bench".into(),
            ..Hello::default()
        })),
    };
    if tx.send(hello).await.is_err() {
        return (false, None);
    }
    let resp = match client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r,
        Err(status) => {
            let m: String = status.message().chars().take(60).collect();
            fleet.failed(format!("session[{:?}: {m}]", status.code()));
            return (false, None);
        }
    };
    let mut inbound = resp.into_inner();
    let mut welcomed = false;
    let mut retry_after = None;
    let mut beat = tokio::time::interval(Duration::from_secs(15));
    beat.tick().await;
    loop {
        tokio::select! {
            msg = inbound.message() => {
                let msg = match msg {
                    Ok(Some(m)) => m,
                    Ok(None) => { if !welcomed { fleet.failed("closed before welcome".into()); } break }
                    Err(status) => { fleet.failed(format!("stream[{:?}]", status.code())); break }
                };
                match msg.kind {
                    Some(control_message::Kind::Welcome(w)) => {
                        welcomed = true;
                        fleet.live.fetch_add(1, Ordering::SeqCst);
                        fleet.welcomes.fetch_add(1, Ordering::SeqCst);
                        let secs = u64::from(w.heartbeat_interval_seconds.max(1));
                        beat = tokio::time::interval(Duration::from_secs(secs));
                        beat.tick().await;
                    }
                    Some(control_message::Kind::DesiredState(d)) => {
                        stats.last_push_ns.store(epoch.elapsed().as_nanos() as u64, Ordering::SeqCst);
                        stats.pushes.fetch_add(1, Ordering::SeqCst);
                        fleet.pushes.fetch_add(1, Ordering::SeqCst);
                        fleet.pushed.notify_waiters();
                        let ack = AgentMessage { kind: Some(agent_message::Kind::Applied(Applied {
                            generation: d.generation, conditions: vec![] })) };
                        if tx.send(ack).await.is_err() { break; }
                    }
                    Some(control_message::Kind::Goodbye(g)) => {
                        fleet.failed(format!("goodbye[{}]", g.reason));
                        retry_after = Some(Duration::from_millis(g.retry_after_ms));
                        break;
                    }
                    _ => {}
                }
            }
            _ = beat.tick() => {
                let hb = AgentMessage { kind: Some(agent_message::Kind::Heartbeat(Heartbeat {
                    sent_at_unix_ms: tether_shared::timestamps::now_unix_ms() })) };
                if tx.send(hb).await.is_err() { break; }
            }
            () = stopped(stop) => break,
        }
    }
    if welcomed {
        fleet.live.fetch_sub(1, Ordering::SeqCst);
    }
    (welcomed, retry_after)
}

/// Resolves once `stop` is true (without holding the watch's lock across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
