//! The `Telemetry` stream: batches of records in, acks of the high-water mark out. Each
//! batch is stored in one transaction before it is acked, so an ack always means durable.
//! Protobuf stops here: records become [`TelemetryItem`]s, with every text field bounded.

use tether_proto::v1::{TelemetryAck, TelemetryBatch, telemetry_record};
use tokio::sync::mpsc;
use tonic::Streaming;

use crate::state::AppState;
use crate::store::{DroppedRecords, QueryRow, TelemetryItem};

/// What a batch says the agent dropped: the total, and per class when the agent counts so.
fn dropped(batch: &TelemetryBatch) -> DroppedRecords {
    let by = batch.dropped_by_class.unwrap_or_default();
    DroppedRecords {
        total: batch.dropped_records_total,
        events: by.events,
        metrics: by.metrics,
        query_records: by.query_records,
    }
}

/// Longest text kept from any telemetry field (query texts included).
const MAX_TEXT: usize = 64 * 1024;

/// `s`, cut to [`MAX_TEXT`] bytes at a character boundary (moved, not copied: this runs
/// for a dozen fields of every record at full ingest rate).
fn clip(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Converts one wire record; `None` for an empty record.
pub fn item(kind: telemetry_record::Kind) -> Option<TelemetryItem> {
    Some(match kind {
        telemetry_record::Kind::Metric(m) => TelemetryItem::Metric {
            cluster: clip(m.cluster),
            name: clip(m.name),
            ts_ms: m.timestamp_unix_ms,
            value: if m.value.is_finite() {
                m.value
            } else {
                return None;
            },
        },
        telemetry_record::Kind::Query(q) => TelemetryItem::Query(Box::new(QueryRow {
            query_id: clip(q.query_id),
            cluster: clip(q.cluster),
            user: clip(q.user),
            source: clip(q.source),
            catalog: clip(q.catalog),
            schema: clip(q.schema),
            state: clip(q.state),
            error_type: clip(q.error_type),
            error_code: clip(q.error_code),
            error_message: clip(q.error_message),
            create_time_ms: q.create_time_unix_ms,
            end_time_ms: q.end_time_unix_ms,
            queued_time_ms: q.queued_time_ms,
            elapsed_time_ms: q.elapsed_time_ms,
            cpu_time_ms: q.cpu_time_ms,
            peak_memory_bytes: q.peak_memory_bytes,
            input_rows: q.input_rows,
            input_bytes: q.input_bytes,
            output_rows: q.output_rows,
            query: clip(q.query),
            fingerprint: clip(q.fingerprint),
        })),
        telemetry_record::Kind::Event(e) => TelemetryItem::Event {
            cluster: clip(e.cluster),
            kind: clip(e.r#type),
            reason: clip(e.reason),
            message: clip(e.message),
            ts_ms: e.timestamp_unix_ms,
        },
    })
}

/// Serves one telemetry stream of compute plane `cp` until it ends.
pub async fn serve(
    state: AppState,
    cp: String,
    mut inbound: Streaming<TelemetryBatch>,
    acks: mpsc::Sender<Result<TelemetryAck, tonic::Status>>,
) {
    loop {
        let batch = match inbound.message().await {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(status) => {
                tracing::debug!(compute_plane = %cp, %status, "telemetry stream ended");
                return;
            }
        };
        let dropped = dropped(&batch);
        let items: Vec<(u64, TelemetryItem)> = batch
            .records
            .into_iter()
            .filter_map(|r| r.kind.and_then(item).map(|i| (r.seq, i)))
            .collect();
        let stored = state.store.ingest(&cp, items, dropped).await;
        match stored {
            Ok((through, new)) => {
                let m = &*crate::metrics::METRICS;
                m.telemetry_batches_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                m.telemetry_records_total
                    .fetch_add(new, std::sync::atomic::Ordering::Relaxed);
                if acks
                    .send(Ok(TelemetryAck {
                        through_seq: through,
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(compute_plane = %cp, error = %e, "storing telemetry failed");
                let _ = acks
                    .send(Err(tonic::Status::unavailable(
                        "telemetry storage failed; resend later",
                    )))
                    .await;
                return;
            }
        }
    }
}
