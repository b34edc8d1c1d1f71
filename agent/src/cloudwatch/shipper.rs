//! [`LogShipper`]: the handle that takes events, and the background flusher that turns
//! them into PutLogEvents calls.
//!
//! The flusher is the only task that talks to CloudWatch, so calls to one stream never
//! race (which the sequence tokens of the older API required) and a failing call simply
//! holds up the ones behind it while the buffer bound protects memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::operation::put_log_events::{PutLogEventsError, PutLogEventsOutput};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use tokio::sync::{Notify, watch};

use super::batch::{self, LogEvent};
use super::client;
use super::error::{Context, classify};
use super::queue::Queue;
use super::{CloudWatchConfig, CloudWatchError};
use crate::retry::{Retry, RetryPolicy};

/// Ships log events to one CloudWatch Logs stream. Cheap to clone: every clone feeds the
/// same buffer and flusher.
#[derive(Clone)]
pub struct LogShipper {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    log_group: String,
    log_stream: String,
    /// For error messages: the override or the regional endpoint.
    endpoint: String,
    flush_interval: Duration,
    retry: RetryPolicy,
    queue: Mutex<Queue>,
    /// Wakes the flusher early: a full call is waiting, or `flush` was called.
    wake: Notify,
    /// `Queue::settled_before` as last published by the flusher.
    settled: watch::Sender<u64>,
    /// Set while the flusher task exists.
    running: AtomicBool,
    dropped: AtomicU64,
    shipped: AtomicU64,
    rejected: AtomicU64,
    /// The latest failure, cleared by the next success; `flush` reports it.
    last_error: Mutex<Option<CloudWatchError>>,
}

/// State only the flusher touches.
#[derive(Default)]
struct Flusher {
    stream_ready: bool,
    /// Only ever set after the service demanded one (older API behaviour).
    sequence_token: Option<String>,
}

impl LogShipper {
    /// Builds the AWS client (aws-config defaults + optional endpoint override, region and
    /// static credentials), creates the log group and stream if missing, and spawns the
    /// background flusher on the current tokio runtime.
    ///
    /// Fails on what needs an operator (invalid configuration, no or refused credentials,
    /// access denied). A network or service failure does not fail the start: the flusher
    /// keeps retrying, and the agent's logs wait in the buffer meanwhile.
    pub async fn start(config: CloudWatchConfig) -> Result<Self, CloudWatchError> {
        config.validate()?;
        let (client, endpoint) = client::connect(&config).await;
        let shipper = Self::with_client(client, config, endpoint);

        let mut flusher = Flusher::default();
        match shipper.inner.ensure_stream().await {
            Ok(()) => flusher.stream_ready = true,
            Err(e) if e.needs_operator() => return Err(e),
            Err(e) => {
                tracing::warn!("{e}; shipping logs once it is reachable");
                shipper.inner.record_error(e);
            }
        }
        shipper.inner.running.store(true, Ordering::SeqCst);
        tokio::spawn(run(shipper.inner.clone(), flusher));
        Ok(shipper)
    }

    /// Another stream of the same log group, over the same client, with its own buffer
    /// (bounded by `max_buffered_bytes`) and its own flusher, which creates the stream on
    /// its first call. Used for the Presto pods' logs, one stream per container.
    pub fn for_stream(
        &self,
        log_stream: String,
        max_buffered_bytes: usize,
    ) -> Result<LogShipper, CloudWatchError> {
        let config = CloudWatchConfig {
            log_group: self.inner.log_group.clone(),
            log_stream,
            endpoint_url: None,
            region: None,
            credentials: None,
            max_buffered_bytes,
            flush_interval: self.inner.flush_interval,
            retry: self.inner.retry,
        };
        config.validate()?;
        let shipper = Self::with_client(
            self.inner.client.clone(),
            config,
            self.inner.endpoint.clone(),
        );
        shipper.inner.running.store(true, Ordering::SeqCst);
        tokio::spawn(run(shipper.inner.clone(), Flusher::default()));
        Ok(shipper)
    }

    /// The log stream this shipper writes.
    pub fn log_stream(&self) -> &str {
        &self.inner.log_stream
    }

    /// A shipper without a flusher (nothing is sent): for tests of what is buffered.
    fn with_client(client: Client, config: CloudWatchConfig, endpoint: String) -> Self {
        let (settled, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                client,
                log_group: config.log_group,
                log_stream: config.log_stream,
                endpoint,
                flush_interval: config.flush_interval,
                retry: config.retry,
                queue: Mutex::new(Queue::new(config.max_buffered_bytes)),
                wake: Notify::new(),
                settled,
                running: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
                shipped: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                last_error: Mutex::new(None),
            }),
        }
    }

    /// Enqueues one event (timestamp in ms since the epoch, message). Never blocks on I/O
    /// and never fails: over the bound the oldest events are dropped and counted. Messages
    /// over 256 KiB are truncated with a marker.
    pub fn push(&self, timestamp_ms: i64, message: String) {
        let event = LogEvent::new(timestamp_ms, message);
        let pushed = lock(&self.inner.queue).push(event);
        if pushed.dropped > 0 {
            self.inner
                .dropped
                .fetch_add(pushed.dropped, Ordering::Relaxed);
        }
        if pushed.batch_ready {
            self.inner.wake.notify_one();
        }
    }

    /// Events dropped because of the buffer bound.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Events accepted by CloudWatch.
    pub fn shipped(&self) -> u64 {
        self.inner.shipped.load(Ordering::Relaxed)
    }

    /// Events dropped because CloudWatch would not (or did not) take them: older than 14
    /// days, or refused as invalid.
    pub fn rejected(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    /// Bytes buffered (waiting or in flight), counted as CloudWatch counts them.
    pub fn buffered_bytes(&self) -> usize {
        lock(&self.inner.queue).bytes()
    }

    /// Ships everything pushed before this call (used at shutdown), waiting at most
    /// `timeout`. On timeout the events stay buffered, and the error is the latest failure
    /// (e.g. "cannot reach CloudWatch Logs endpoint …") if there was one.
    pub async fn flush(&self, timeout: Duration) -> Result<(), CloudWatchError> {
        let target = lock(&self.inner.queue).next_seq();
        let mut settled = self.inner.settled.subscribe();
        if *settled.borrow() >= target {
            return Ok(());
        }
        if !self.inner.running.load(Ordering::SeqCst) {
            return Err(CloudWatchError::Stopped);
        }
        self.inner.wake.notify_one();
        match tokio::time::timeout(timeout, settled.wait_for(|s| *s >= target)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(CloudWatchError::Stopped),
            Err(_) if !self.inner.running.load(Ordering::SeqCst) => Err(CloudWatchError::Stopped),
            Err(_) => {
                Err(lock(&self.inner.last_error)
                    .clone()
                    .unwrap_or(CloudWatchError::FlushTimeout {
                        timeout,
                        pending: lock(&self.inner.queue).len(),
                    }))
            }
        }
    }
}

impl std::fmt::Debug for LogShipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogShipper")
            .field("log_group", &self.inner.log_group)
            .field("log_stream", &self.inner.log_stream)
            .field("endpoint", &self.inner.endpoint)
            .finish_non_exhaustive()
    }
}

/// The flusher: wakes every `flush_interval` or when asked, then ships all that waits.
async fn run(inner: Arc<Inner>, mut flusher: Flusher) {
    struct Running<'a>(&'a Inner);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.0.running.store(false, Ordering::SeqCst);
        }
    }
    let _running = Running(&inner);
    loop {
        tokio::select! {
            () = tokio::time::sleep(inner.flush_interval) => {}
            () = inner.wake.notified() => {}
        }
        inner.drain(&mut flusher).await;
        if Arc::strong_count(&inner) == 1 {
            // Every handle is gone and the buffer is empty: nothing more can arrive.
            return;
        }
    }
}

impl Inner {
    /// Ships chunk after chunk until nothing waits.
    async fn drain(&self, flusher: &mut Flusher) {
        loop {
            let chunk = {
                let mut queue = lock(&self.queue);
                let chunk = queue.take_chunk();
                if chunk.is_none() {
                    self.settled.send_replace(queue.settled_before());
                }
                chunk
            };
            let Some(chunk) = chunk else { return };
            let plan = batch::plan(chunk, now_ms());
            if plan.too_old > 0 {
                self.rejected.fetch_add(plan.too_old, Ordering::Relaxed);
                tracing::warn!(
                    events = plan.too_old,
                    "dropped log events older than CloudWatch accepts (14 days)"
                );
            }
            for events in plan.batches {
                self.put_until_settled(flusher, events).await;
            }
            let mut queue = lock(&self.queue);
            queue.settle();
            self.settled.send_replace(queue.settled_before());
        }
    }

    /// One call, retried until the service has taken or refused it for good.
    async fn put_until_settled(&self, flusher: &mut Flusher, events: Vec<LogEvent>) {
        let count = events.len() as u64;
        let input: Vec<InputLogEvent> = events
            .into_iter()
            // `build` fails only when a required field is unset; both always are.
            .filter_map(|e| {
                InputLogEvent::builder()
                    .timestamp(e.timestamp_ms)
                    .message(e.message)
                    .build()
                    .ok()
            })
            .collect();
        let mut retry = Retry::new(self.retry);
        let mut token_retried = false;
        loop {
            if !flusher.stream_ready {
                match self.ensure_stream().await {
                    Ok(()) => flusher.stream_ready = true,
                    Err(e) => {
                        self.fail(e, &mut retry).await;
                        continue;
                    }
                }
            }
            let result = self
                .client
                .put_log_events()
                .log_group_name(&self.log_group)
                .log_stream_name(&self.log_stream)
                .set_log_events(Some(input.clone()))
                .set_sequence_token(flusher.sequence_token.clone())
                .send()
                .await;
            let err = match result {
                Ok(out) => {
                    self.accepted(flusher, &out, count);
                    return;
                }
                Err(err) => err,
            };
            let cx = self.context("PutLogEvents");
            match err.as_service_error() {
                // Older API behaviour: the call was a retry of one already taken.
                Some(PutLogEventsError::DataAlreadyAcceptedException(e)) => {
                    flusher.sequence_token = e.expected_sequence_token().map(str::to_owned);
                    self.shipped.fetch_add(count, Ordering::Relaxed);
                    return;
                }
                // Older API behaviour: tokens are demanded; use the one offered.
                Some(PutLogEventsError::InvalidSequenceTokenException(e)) => {
                    flusher.sequence_token = e.expected_sequence_token().map(str::to_owned);
                    if !token_retried {
                        token_retried = true;
                        continue;
                    }
                    self.fail(classify(&err, cx), &mut retry).await;
                }
                // The group or stream was deleted under us: create them again.
                Some(PutLogEventsError::ResourceNotFoundException(_)) => {
                    flusher.stream_ready = false;
                    flusher.sequence_token = None;
                    self.fail(classify(&err, cx), &mut retry).await;
                }
                // Retrying the same call cannot succeed; drop it rather than wedge.
                Some(PutLogEventsError::InvalidParameterException(_)) => {
                    self.rejected.fetch_add(count, Ordering::Relaxed);
                    tracing::error!(events = count, "{}", classify(&err, cx));
                    return;
                }
                _ => self.fail(classify(&err, cx), &mut retry).await,
            }
        }
    }

    /// Counts what the service accepted out of a successful call.
    fn accepted(&self, flusher: &mut Flusher, out: &PutLogEventsOutput, count: u64) {
        if flusher.sequence_token.is_some() {
            flusher.sequence_token = out.next_sequence_token().map(str::to_owned);
        }
        let rejected = out.rejected_log_events_info().map_or(0, |r| {
            // The end indices are inclusive; the start index is the first too-new event.
            let old = r
                .too_old_log_event_end_index()
                .max(r.expired_log_event_end_index())
                .map_or(0, |i| i as u64 + 1);
            let new = r
                .too_new_log_event_start_index()
                .map_or(0, |i| count.saturating_sub(i as u64));
            (old + new).min(count)
        });
        if rejected > 0 {
            self.rejected.fetch_add(rejected, Ordering::Relaxed);
            tracing::warn!(
                events = rejected,
                "CloudWatch Logs rejected log events for their timestamps"
            );
        }
        self.shipped.fetch_add(count - rejected, Ordering::Relaxed);
        *lock(&self.last_error) = None;
    }

    /// Records a failed attempt and waits before the next.
    async fn fail(&self, e: CloudWatchError, retry: &mut Retry) {
        let delay = retry.next_delay();
        tracing::warn!(
            delay_ms = delay.as_millis() as u64,
            "{e}; retrying the log batch"
        );
        self.record_error(e);
        tokio::time::sleep(delay).await;
    }

    fn record_error(&self, e: CloudWatchError) {
        *lock(&self.last_error) = Some(e);
    }

    async fn ensure_stream(&self) -> Result<(), CloudWatchError> {
        client::ensure_stream(
            &self.client,
            &self.log_group,
            &self.log_stream,
            &self.endpoint,
        )
        .await
    }

    fn context(&self, operation: &'static str) -> Context<'_> {
        Context {
            operation,
            log_group: &self.log_group,
            endpoint: &self.endpoint,
        }
    }
}

/// The data behind these locks stays consistent at every await-free step, so a panic
/// elsewhere never makes it unusable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> i64 {
    tether_shared::timestamps::now_unix_ms()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cloudwatch::batch::{EVENT_OVERHEAD, MAX_MESSAGE_BYTES, TRUNCATION_MARKER};
    use aws_config::{BehaviorVersion, Region};

    /// A shipper that buffers but never sends.
    pub(crate) fn unstarted(max_buffered_bytes: usize) -> LogShipper {
        let conf = aws_sdk_cloudwatchlogs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::from_static("us-east-1"))
            .build();
        let config = CloudWatchConfig {
            max_buffered_bytes,
            ..CloudWatchConfig::default()
        };
        LogShipper::with_client(Client::from_conf(conf), config, "http://unused".into())
    }

    /// The messages buffered, oldest first.
    pub(crate) fn buffered(shipper: &LogShipper) -> Vec<String> {
        let mut q = lock(&shipper.inner.queue);
        let mut out = Vec::new();
        while let Some(chunk) = q.take_chunk() {
            out.extend(chunk.into_iter().map(|e| e.message));
            q.settle();
        }
        out
    }

    #[test]
    fn push_bounds_and_counts() {
        let s = unstarted(10 * (EVENT_OVERHEAD + 2));
        for i in 0..30 {
            s.push(i, format!("{i:02}"));
        }
        assert_eq!(s.dropped(), 20);
        assert_eq!(s.buffered_bytes(), 10 * (EVENT_OVERHEAD + 2));
        let msgs = buffered(&s);
        assert_eq!(msgs.first().map(String::as_str), Some("20"));
        assert_eq!(msgs.len(), 10);
    }

    #[test]
    fn push_truncates_long_messages() {
        let s = unstarted(usize::MAX);
        s.push(1, "x".repeat(MAX_MESSAGE_BYTES + 100));
        assert_eq!(s.buffered_bytes(), MAX_MESSAGE_BYTES + EVENT_OVERHEAD);
        assert!(buffered(&s)[0].ends_with(TRUNCATION_MARKER));
    }

    #[tokio::test]
    async fn flush_without_a_flusher_says_it_stopped() {
        let s = unstarted(usize::MAX);
        assert!(
            s.flush(Duration::from_millis(10)).await.is_ok(),
            "nothing to flush"
        );
        s.push(1, "x".into());
        let e = s.flush(Duration::from_millis(10)).await.unwrap_err();
        assert!(matches!(e, CloudWatchError::Stopped), "{e}");
    }
}
