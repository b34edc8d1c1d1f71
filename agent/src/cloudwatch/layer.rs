//! A `tracing` layer that turns each event into one JSON line for the shipper:
//!
//! ```json
//! {"timestamp":"2026-11-26T07:48:00.123Z","level":"INFO","target":"tether_agent::session",
//!  "message":"session established","fields":{"attempt":1},"spans":[{"name":"session","compute_plane":"cp-1"}]}
//! ```
//!
//! It composes with any other layer:
//! `tracing_subscriber::registry().with(fmt_layer).with(cloudwatch::layer(shipper))`.
//!
//! Two kinds of events are not shipped, so that shipping can never feed itself: the
//! shipper's own (`tether_agent::cloudwatch`, e.g. "cannot reach CloudWatch Logs") and
//! DEBUG/TRACE events of the AWS SDK and HTTP/TLS stack, which every PutLogEvents call
//! emits. Other layers still see them.

use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::LogShipper;

/// Targets whose DEBUG/TRACE events are emitted by shipping itself.
const TRANSPORT_TARGETS: &[&str] = &["aws_", "hyper", "h2", "rustls", "tokio_rustls", "tower"];

/// The layer returned by [`layer`].
#[derive(Clone)]
pub struct CloudWatchLayer {
    shipper: LogShipper,
}

/// A tracing layer that formats each event as one JSON object (timestamp, level, target,
/// message, fields, enclosing spans) and pushes it to `shipper`.
pub fn layer(shipper: LogShipper) -> CloudWatchLayer {
    CloudWatchLayer { shipper }
}

/// Whether an event is shipped (see the module docs).
fn ships(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    let own = target
        .strip_prefix(module_path!().trim_end_matches("::layer"))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
    if own {
        return false;
    }
    let chatty = *meta.level() >= Level::DEBUG;
    !(chatty && TRANSPORT_TARGETS.iter().any(|t| target.starts_with(t)))
}

/// A span's fields, kept in its extensions from creation on.
struct SpanFields(Map<String, Value>);

#[derive(Serialize)]
struct Line<'a> {
    timestamp: String,
    level: &'a str,
    target: &'a str,
    message: String,
    fields: Map<String, Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    spans: Vec<SpanLine<'a>>,
}

#[derive(Serialize)]
struct SpanLine<'a> {
    name: &'a str,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

impl<S> Layer<S> for CloudWatchLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !ships(attrs.metadata()) {
            return;
        }
        if let Some(span) = ctx.span(id) {
            let mut fields = Fields::default();
            attrs.record(&mut fields);
            span.extensions_mut().insert(SpanFields(fields.fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(SpanFields(map)) = ext.get_mut::<SpanFields>() {
            let mut fields = Fields {
                fields: std::mem::take(map),
                message: None,
            };
            values.record(&mut fields);
            *map = fields.fields;
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !ships(meta) {
            return;
        }
        let now = OffsetDateTime::now_utc();
        let timestamp_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let mut fields = Fields::default();
        event.record(&mut fields);
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|span| SpanLine {
                        name: span.name(),
                        fields: span
                            .extensions()
                            .get::<SpanFields>()
                            .map(|f| f.0.clone())
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let line = Line {
            timestamp: format_millis(timestamp_ms).unwrap_or_default(),
            level: meta.level().as_str(),
            target: meta.target(),
            message: fields.message.unwrap_or_default(),
            fields: fields.fields,
            spans,
        };
        if let Ok(json) = serde_json::to_string(&line) {
            self.shipper.push(timestamp_ms, json);
        }
    }
}

/// RFC 3339 in UTC with millisecond precision, the precision CloudWatch keeps.
fn format_millis(ms: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// Collects an event's or span's fields as JSON values; `message` is kept apart.
#[derive(Default)]
struct Fields {
    fields: Map<String, Value>,
    message: Option<String>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(
            field,
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        self.put(field, text.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudwatch::shipper::tests::{buffered, unstarted};
    use tracing_subscriber::layer::SubscriberExt;

    fn lines_of(f: impl FnOnce()) -> Vec<Value> {
        let shipper = unstarted(usize::MAX);
        let subscriber = tracing_subscriber::registry().with(layer(shipper.clone()));
        tracing::subscriber::with_default(subscriber, f);
        buffered(&shipper)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn formats_one_json_object_per_event() {
        let before = OffsetDateTime::now_utc();
        let lines = lines_of(|| {
            let span = tracing::info_span!(target: "tether_agent::session", "session", compute_plane = "cp-1", attempt = 3);
            let _g = span.enter();
            tracing::warn!(
                target: "tether_agent::session",
                retry_ms = 250_u64,
                ok = false,
                ratio = 0.5,
                peer = %"10.0.0.1",
                "cannot hold a session: {}",
                "reset"
            );
        });
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l["level"], "WARN");
        assert_eq!(l["target"], "tether_agent::session");
        assert_eq!(l["message"], "cannot hold a session: reset");
        assert_eq!(l["fields"]["retry_ms"], 250);
        assert_eq!(l["fields"]["ok"], false);
        assert_eq!(l["fields"]["ratio"], 0.5);
        assert_eq!(l["fields"]["peer"], "10.0.0.1");
        assert_eq!(l["spans"][0]["name"], "session");
        assert_eq!(l["spans"][0]["compute_plane"], "cp-1");
        assert_eq!(l["spans"][0]["attempt"], 3);
        let ts = OffsetDateTime::parse(l["timestamp"].as_str().unwrap(), &Rfc3339).unwrap();
        assert!(ts >= before.replace_nanosecond(0).unwrap());
    }

    #[test]
    fn span_fields_recorded_later_are_included() {
        let lines = lines_of(|| {
            let span = tracing::info_span!(target: "tether_agent::reconcile", "reconcile", generation = tracing::field::Empty);
            span.record("generation", 7);
            span.in_scope(|| tracing::info!(target: "tether_agent::reconcile", "applied"));
        });
        assert_eq!(lines[0]["spans"][0]["generation"], 7);
        assert!(lines[0]["fields"].as_object().unwrap().is_empty());
    }

    #[test]
    fn errors_carry_their_chain() {
        let err = Wrapped(std::io::Error::other("connection reset"));
        let lines = lines_of(|| {
            tracing::error!(
                target: "tether_agent",
                error = &err as &(dyn std::error::Error + 'static),
                "failed"
            );
        });
        let text = lines[0]["fields"]["error"].as_str().unwrap();
        assert!(text == "wrapped: connection reset", "{text}");
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn shipping_never_feeds_itself() {
        let lines = lines_of(|| {
            tracing::warn!(target: "tether_agent::cloudwatch::shipper", "cannot reach");
            tracing::warn!(target: "tether_agent::cloudwatch", "cannot reach");
            tracing::debug!(target: "aws_smithy_runtime::client", "sending");
            tracing::trace!(target: "hyper_util::client", "connecting");
            tracing::debug!(target: "h2::codec", "frame");
            tracing::info!(target: "aws_config::meta", "loaded credentials");
            tracing::debug!(target: "tether_agent::cloudwatchers", "not us");
        });
        let targets: Vec<&str> = lines
            .iter()
            .map(|l| l["target"].as_str().unwrap())
            .collect();
        assert_eq!(targets, ["aws_config::meta", "tether_agent::cloudwatchers"]);
    }

    #[test]
    fn millisecond_timestamps() {
        assert_eq!(
            format_millis(1_800_000_000_123).as_deref(),
            Some("2027-01-15T08:00:00.123Z")
        );
    }
}
