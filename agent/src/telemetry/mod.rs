//! Telemetry: metrics, query records and events, spooled on disk with per-agent sequence
//! numbers ([`spool`]) and sent on the `Telemetry` stream — its own HTTP/2 stream beside
//! the session, so a flood of records never delays a control message. The control plane
//! acks a high-water mark; after a reconnect the agent resends what was not acked, and the
//! control plane ignores sequence numbers it already has.

pub mod spool;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_proto::v1::agent_control_client::AgentControlClient;
use tether_proto::v1::{TelemetryBatch, telemetry_record};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use spool::Spool;

/// Most records in one batch.
const BATCH_RECORDS: usize = 500;
/// About the most bytes in one batch (well under the 4 MiB message limit).
const BATCH_BYTES: usize = 1 << 20;
/// Batches sent ahead of their acks.
const WINDOW: usize = 4;

/// Shared access to the spool for producers (collectors) and the uplink.
#[derive(Debug, Clone)]
pub struct Telemetry {
    spool: Arc<Mutex<Spool>>,
    notify: Arc<Notify>,
}

impl Telemetry {
    /// Opens the spool under `state_dir/spool`, bounded to `max_bytes`.
    pub fn open(state_dir: &std::path::Path, max_bytes: u64) -> std::io::Result<Self> {
        let spool = Spool::open(&state_dir.join("spool"), max_bytes)?;
        Ok(Self {
            spool: Arc::new(Mutex::new(spool)),
            notify: Arc::new(Notify::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Spool> {
        // Spool operations leave it consistent between calls; a panic elsewhere while
        // holding the lock does not corrupt it.
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one item; it is on disk (page cache) when this returns.
    pub fn record(&self, kind: telemetry_record::Kind) {
        if let Err(e) = self.lock().append(kind) {
            tracing::error!("telemetry spool write failed: {e}");
        }
        self.notify.notify_one();
    }

    /// fsyncs the spool (called periodically).
    pub fn sync(&self) {
        if let Err(e) = self.lock().sync() {
            tracing::warn!("telemetry spool sync failed: {e}");
        }
    }

    /// (next sequence number, acked, dropped total, bytes on disk).
    pub fn stats(&self) -> (u64, u64, u64, u64) {
        let s = self.lock();
        (s.next_seq(), s.acked(), s.dropped_total(), s.bytes())
    }

    /// Sends spooled records on a `Telemetry` stream of `client` until the stream ends.
    /// `acked` is what the control plane said it holds (from Welcome).
    pub async fn uplink(
        &self,
        mut client: AgentControlClient<Channel>,
        acked: u64,
    ) -> Result<(), tonic::Status> {
        if let Err(e) = self.lock().start_session(acked) {
            tracing::warn!("telemetry spool ack failed: {e}");
        }
        let (tx, rx) = mpsc::channel::<TelemetryBatch>(WINDOW);
        let mut acks = client
            .telemetry(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let mut next = self.lock().acked() + 1;
        let mut in_flight: usize = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                ack = acks.message() => match ack? {
                    Some(a) => {
                        in_flight = in_flight.saturating_sub(1);
                        if let Err(e) = self.lock().ack(a.through_seq) {
                            tracing::warn!("telemetry spool ack failed: {e}");
                        }
                    }
                    None => return Ok(()),
                },
                () = self.notify.notified(), if in_flight < WINDOW => {}
                _ = tick.tick() => {}
            }
            while in_flight < WINDOW {
                let (records, dropped) = {
                    let mut s = self.lock();
                    // Never ask again for what the control plane holds; dropped records leave gaps
                    // that reading passes over.
                    next = next.max(s.acked() + 1);
                    let recs = s
                        .read_from(next, BATCH_RECORDS, BATCH_BYTES)
                        .map_err(|e| tonic::Status::internal(e.to_string()))?;
                    if let Some(last) = recs.last() {
                        s.mark_sent(last.seq);
                    }
                    (recs, s.dropped())
                };
                let Some(last) = records.last().map(|r| r.seq) else {
                    break;
                };
                next = last + 1;
                if tx
                    .send(TelemetryBatch {
                        records,
                        dropped_records_total: dropped.total(),
                        dropped_by_class: Some(tether_proto::v1::DroppedByClass {
                            events: dropped.events,
                            metrics: dropped.metrics,
                            query_records: dropped.query_records,
                        }),
                    })
                    .await
                    .is_err()
                {
                    return Ok(());
                }
                in_flight += 1;
            }
        }
    }
}
