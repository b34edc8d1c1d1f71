//! Ships the agent's own JSON logs (and, later, Presto pods' logs) to the customer's
//! CloudWatch Logs log group.
//!
//! ```text
//!  tracing ──▶ layer::CloudWatchLayer ──push──▶ queue (bounded; oldest dropped, counted)
//!                                                   │ a full call waiting, every
//!                                                   │ flush_interval, or flush()
//!                                                   ▼
//!                          shipper flusher ── batch::plan ──▶ PutLogEvents (retry, backoff)
//! ```
//!
//! Read in this order: [`batch`] (the PutLogEvents rules as a pure function),
//! [`LogShipper`] (the bounded buffer and the background flusher), [`layer`] (the tracing
//! layer that formats each event as one JSON line).
//!
//! Delivery rules: a call that fails for a transient reason (network, throttling, the
//! service unavailable, even access denied — IAM gets fixed while the agent runs) is
//! retried with the agent's [`crate::retry`] backoff and never dropped; meanwhile new lines
//! wait within `max_buffered_bytes`, beyond which the oldest are dropped and counted in
//! [`LogShipper::dropped`]. Events the service would reject for their age are dropped and
//! counted in [`LogShipper::rejected`]; see [`batch`].

pub mod batch;
pub(crate) mod client;
mod error;
pub mod layer;
mod queue;
mod shipper;

use std::fmt;
use std::time::Duration;

pub use self::error::CloudWatchError;
pub use self::layer::{CloudWatchLayer, layer};
pub use self::shipper::LogShipper;
use crate::retry::RetryPolicy;

/// Where and how to ship.
#[derive(Clone)]
pub struct CloudWatchConfig {
    /// Log group, e.g. `/tether/<compute-plane>`; created if missing (and allowed).
    pub log_group: String,
    /// Log stream, e.g. `agent/<hostname>`; created if missing.
    pub log_stream: String,
    /// Endpoint override (tests: moto's URL); `None` uses the SDK's regional endpoint.
    pub endpoint_url: Option<String>,
    /// Region; `None` takes it from the environment (`AWS_REGION`, profile, IMDS), else
    /// `us-east-1`.
    pub region: Option<String>,
    /// Static credentials `(access key id, secret access key)`; `None` uses the SDK's
    /// default provider chain (environment, web identity / IRSA, profile, IMDS). Meant for
    /// tests and stand-ins.
    pub credentials: Option<(String, String)>,
    /// Bound on what is buffered (message bytes + 26 per event, the unit CloudWatch
    /// counts); beyond it the oldest events are dropped and counted.
    pub max_buffered_bytes: usize,
    /// How often buffered events are shipped when no full call has accumulated.
    pub flush_interval: Duration,
    /// Backoff between failed calls.
    pub retry: RetryPolicy,
}

impl Default for CloudWatchConfig {
    fn default() -> Self {
        Self {
            log_group: "/tether/agent".into(),
            log_stream: format!("agent/{}", hostname()),
            endpoint_url: None,
            region: None,
            credentials: None,
            max_buffered_bytes: 8 * 1024 * 1024,
            flush_interval: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }
}

impl fmt::Debug for CloudWatchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudWatchConfig")
            .field("log_group", &self.log_group)
            .field("log_stream", &self.log_stream)
            .field("endpoint_url", &self.endpoint_url)
            .field("region", &self.region)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(id, _)| (id, "<redacted>")),
            )
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .field("flush_interval", &self.flush_interval)
            .field("retry", &self.retry)
            .finish()
    }
}

impl CloudWatchConfig {
    /// Checks what the service would refuse later, so that it fails at start instead.
    pub(crate) fn validate(&self) -> Result<(), CloudWatchError> {
        let group_ok = (1..=512).contains(&self.log_group.len())
            && self
                .log_group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/#".contains(c));
        if !group_ok {
            return Err(CloudWatchError::Config(format!(
                "log group {:?} must be 1-512 characters of a-z, A-Z, 0-9, '.', '_', '-', '/', '#'",
                self.log_group
            )));
        }
        let stream_ok =
            (1..=512).contains(&self.log_stream.len()) && !self.log_stream.contains([':', '*']);
        if !stream_ok {
            return Err(CloudWatchError::Config(format!(
                "log stream {:?} must be 1-512 characters without ':' or '*'",
                self.log_stream
            )));
        }
        if self.max_buffered_bytes == 0 {
            return Err(CloudWatchError::Config(
                "max_buffered_bytes must be positive".into(),
            ));
        }
        if self.flush_interval.is_zero() {
            return Err(CloudWatchError::Config(
                "flush_interval must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// The pod name in Kubernetes (`HOSTNAME`), else the kernel's host name.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().replace([':', '*'], "-"))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_hide_the_secret() {
        let mut c = CloudWatchConfig::default();
        c.validate().unwrap();
        assert!(c.log_stream.starts_with("agent/"));
        assert_eq!(c.max_buffered_bytes, 8 * 1024 * 1024);
        assert_eq!(c.flush_interval, Duration::from_secs(5));
        c.credentials = Some(("AKIDEXAMPLE".into(), "very-secret".into()));
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDEXAMPLE") && !shown.contains("very-secret"));
    }

    #[test]
    fn names_the_service_refuses_are_refused_at_start() {
        let bad_group = CloudWatchConfig {
            log_group: "tether group".into(),
            ..CloudWatchConfig::default()
        };
        let e = bad_group.validate().unwrap_err();
        assert!(e.to_string().contains("log group \"tether group\""), "{e}");
        let bad_stream = CloudWatchConfig {
            log_stream: "agent:1".into(),
            ..CloudWatchConfig::default()
        };
        assert!(bad_stream.validate().is_err());
        let no_bound = CloudWatchConfig {
            max_buffered_bytes: 0,
            ..CloudWatchConfig::default()
        };
        assert!(no_bound.validate().is_err());
    }
}
