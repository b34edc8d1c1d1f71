//! What leaves the VPC, in writing: every field the agent can send upstream, derived from
//! the protocol's own descriptors (the input of every RPC, and every message reachable
//! from it), each with its class. A field added to the protocol without a class here
//! fails this module's tests, so the manifest cannot fall behind the protocol.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use serde::Serialize;

/// What kind of information a field carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Who the agent is and how it proves it: tokens, CSRs, serials, versions, ids.
    Identity,
    /// The state of the agent, its session and its clusters.
    Status,
    /// Numbers about clusters and queries.
    Metrics,
    /// Facts about a query that are not its text: ids, user, catalog, times, sizes.
    QueryMetadata,
    /// Text that may come from a customer's query or error, redacted in the agent first
    /// (literals become `?`; error messages lose every digit).
    RedactedText,
    /// Message framing only (a oneof wrapper, a sequence number).
    Framing,
    /// A diagnostic bundle (the agent's log lines, the objects it manages, pod summaries,
    /// a doctor report), redacted in the agent, sent only after the customer approved it
    /// in the VPC.
    SupportBundle,
}

/// The class of every upstream field, by `Message.field`.
const CLASSES: &[(&str, Class)] = &[
    ("EnrollRequest.bootstrap_token", Class::Identity),
    ("EnrollRequest.csr_pem", Class::Identity),
    ("EnrollRequest.agent_version", Class::Identity),
    ("EnrollRequest.expected_compute_plane_id", Class::Identity),
    ("EnrollRequest.aws_identity", Class::Identity),
    ("SignedHttpRequest.method", Class::Identity),
    ("SignedHttpRequest.url", Class::Identity),
    ("SignedHttpRequest.headers", Class::Identity),
    ("SignedHttpRequest.body", Class::Identity),
    ("HttpHeader.name", Class::Identity),
    ("HttpHeader.value", Class::Identity),
    ("RenewCertificateRequest.csr_pem", Class::Identity),
    ("AgentMessage.hello", Class::Framing),
    ("AgentMessage.heartbeat", Class::Framing),
    ("AgentMessage.applied", Class::Framing),
    ("AgentMessage.status", Class::Framing),
    ("AgentMessage.command_result", Class::Framing),
    ("AgentMessage.goodbye", Class::Framing),
    ("Hello.version", Class::Identity),
    ("Hello.capabilities", Class::Identity),
    ("Hello.applied_generation", Class::Status),
    ("Hello.telemetry_next_seq", Class::Framing),
    ("Hello.certificate_serial", Class::Identity),
    ("Heartbeat.sent_at_unix_ms", Class::Status),
    ("Applied.generation", Class::Status),
    ("Applied.conditions", Class::Status),
    ("ClusterCondition.cluster", Class::Status),
    ("ClusterCondition.type", Class::Status),
    ("ClusterCondition.status", Class::Status),
    ("ClusterCondition.reason", Class::Status),
    ("ClusterCondition.message", Class::Status),
    ("ClusterCondition.last_transition_unix_ms", Class::Status),
    ("Status.clusters", Class::Status),
    ("ClusterStatus.name", Class::Status),
    ("ClusterStatus.phase", Class::Status),
    ("ClusterStatus.coordinator_ready", Class::Status),
    ("ClusterStatus.ready_workers", Class::Status),
    ("ClusterStatus.desired_workers", Class::Status),
    ("ClusterStatus.endpoint", Class::Status),
    ("ClusterStatus.observed_generation", Class::Status),
    ("ClusterStatus.conditions", Class::Status),
    ("ClusterStatus.last_error", Class::Status),
    ("CommandResult.command_id", Class::Status),
    ("CommandResult.ok", Class::Status),
    ("CommandResult.message", Class::Status),
    ("AgentGoodbye.reason", Class::Status),
    ("Hello.probe", Class::Status),
    ("TelemetryBatch.records", Class::Framing),
    ("TelemetryBatch.dropped_records_total", Class::Metrics),
    ("TelemetryBatch.dropped_by_class", Class::Framing),
    ("DroppedByClass.events", Class::Metrics),
    ("DroppedByClass.metrics", Class::Metrics),
    ("DroppedByClass.query_records", Class::Metrics),
    ("TelemetryRecord.seq", Class::Framing),
    ("TelemetryRecord.metric", Class::Framing),
    ("TelemetryRecord.query", Class::Framing),
    ("TelemetryRecord.event", Class::Framing),
    ("MetricSample.cluster", Class::Metrics),
    ("MetricSample.name", Class::Metrics),
    ("MetricSample.value", Class::Metrics),
    ("MetricSample.timestamp_unix_ms", Class::Metrics),
    ("QueryRecord.query_id", Class::QueryMetadata),
    ("QueryRecord.cluster", Class::QueryMetadata),
    ("QueryRecord.user", Class::QueryMetadata),
    ("QueryRecord.source", Class::QueryMetadata),
    ("QueryRecord.catalog", Class::QueryMetadata),
    ("QueryRecord.schema", Class::QueryMetadata),
    ("QueryRecord.state", Class::QueryMetadata),
    ("QueryRecord.error_type", Class::QueryMetadata),
    ("QueryRecord.error_code", Class::QueryMetadata),
    ("QueryRecord.error_message", Class::RedactedText),
    ("QueryRecord.create_time_unix_ms", Class::QueryMetadata),
    ("QueryRecord.end_time_unix_ms", Class::QueryMetadata),
    ("QueryRecord.queued_time_ms", Class::Metrics),
    ("QueryRecord.elapsed_time_ms", Class::Metrics),
    ("QueryRecord.cpu_time_ms", Class::Metrics),
    ("QueryRecord.peak_memory_bytes", Class::Metrics),
    ("QueryRecord.input_rows", Class::Metrics),
    ("QueryRecord.input_bytes", Class::Metrics),
    ("QueryRecord.output_rows", Class::Metrics),
    ("QueryRecord.query", Class::RedactedText),
    ("QueryRecord.fingerprint", Class::QueryMetadata),
    ("Event.cluster", Class::Status),
    ("Event.type", Class::Status),
    ("Event.reason", Class::Status),
    ("Event.message", Class::RedactedText),
    ("Event.timestamp_unix_ms", Class::Status),
    ("SupportBundle.request_id", Class::Status),
    ("SupportBundle.files", Class::Framing),
    ("SupportFile.name", Class::SupportBundle),
    ("SupportFile.content", Class::SupportBundle),
];

/// One field the agent can send.
#[derive(Debug, Clone, Serialize)]
pub struct Field {
    /// `Message.field`.
    pub field: String,
    /// Its protobuf type (`string`, `int64`, a message name …), `repeated` if it is.
    #[serde(rename = "type")]
    pub ty: String,
    /// Its class; `None` only for a field this table does not know yet (a test fails).
    pub class: Option<Class>,
    /// The RPCs that can carry it.
    pub rpcs: BTreeSet<String>,
}

/// The manifest: every upstream field, sorted by name.
#[derive(Debug, Serialize)]
pub struct Manifest {
    /// The protocol package.
    pub package: String,
    /// The fields.
    pub fields: Vec<Field>,
}

/// Why the descriptors could not be read (a build problem, not a user's).
#[derive(Debug, thiserror::Error)]
#[error("the protocol descriptors: {0}")]
pub struct DescriptorError(String);

/// Derives the manifest from the compiled protocol.
pub fn manifest() -> Result<Manifest, DescriptorError> {
    let fds = FileDescriptorSet::decode(tether_proto::FILE_DESCRIPTOR_SET)
        .map_err(|e| DescriptorError(e.to_string()))?;
    let file = fds
        .file
        .iter()
        .find(|f| f.package() == "tether.v1")
        .ok_or_else(|| DescriptorError("no package tether.v1".into()))?;
    let prefix = format!(".{}.", file.package());
    let messages: BTreeMap<&str, &DescriptorProto> =
        file.message_type.iter().map(|m| (m.name(), m)).collect();
    let classes: BTreeMap<&str, Class> = CLASSES.iter().copied().collect();
    let mut fields: BTreeMap<String, Field> = BTreeMap::new();
    for service in &file.service {
        for rpc in &service.method {
            // What the agent sends: each RPC's input, and what it reaches.
            let mut todo = vec![rpc.input_type().trim_start_matches(&prefix).to_owned()];
            let mut seen = BTreeSet::new();
            while let Some(name) = todo.pop() {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let m = messages
                    .get(name.as_str())
                    .ok_or_else(|| DescriptorError(format!("no message {name}")))?;
                for f in &m.field {
                    let key = format!("{name}.{}", f.name());
                    let nested = f.r#type() == Type::Message;
                    let type_name = f.type_name().trim_start_matches(&prefix);
                    // A map is a nested entry message marked `map_entry`: a leaf here. Any
                    // other nested message must be a top-level one (an error below if not),
                    // so no field is ever skipped silently.
                    let map_entry = m.nested_type.iter().any(|n| {
                        n.options
                            .as_ref()
                            .and_then(|o| o.map_entry)
                            .unwrap_or(false)
                            && type_name.rsplit('.').next() == Some(n.name())
                    });
                    let ty = if nested {
                        type_name.to_owned()
                    } else {
                        format!("{:?}", f.r#type()).to_lowercase()
                    };
                    if nested && !map_entry {
                        todo.push(type_name.to_owned());
                    }
                    let entry = fields.entry(key.clone()).or_insert_with(|| Field {
                        field: key.clone(),
                        ty: if f.label() == Label::Repeated && !map_entry {
                            format!("repeated {ty}")
                        } else {
                            ty
                        },
                        class: classes.get(key.as_str()).copied(),
                        rpcs: BTreeSet::new(),
                    });
                    entry.rpcs.insert(rpc.name().to_owned());
                }
            }
        }
    }
    Ok(Manifest {
        package: file.package().to_owned(),
        fields: fields.into_values().collect(),
    })
}

/// The manifest as a Markdown table (for docs/security.md).
pub fn markdown(m: &Manifest) -> String {
    let mut out = String::from("| field | type | class | sent by |\n|---|---|---|---|\n");
    for f in &m.fields {
        let class = f
            .class
            .map(|c| {
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .unwrap_or_else(|| "UNCLASSIFIED".into());
        let rpcs: Vec<&str> = f.rpcs.iter().map(String::as_str).collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            f.field,
            f.ty,
            class,
            rpcs.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_upstream_field_has_a_class_and_every_class_a_field() {
        let m = manifest().expect("manifest");
        let unclassified: Vec<&str> = m
            .fields
            .iter()
            .filter(|f| f.class.is_none())
            .map(|f| f.field.as_str())
            .collect();
        assert!(
            unclassified.is_empty(),
            "fields the agent can send without a class in agent/src/egress.rs: {unclassified:?}"
        );
        let known: BTreeSet<&str> = m.fields.iter().map(|f| f.field.as_str()).collect();
        let stale: Vec<&str> = CLASSES
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !known.contains(k))
            .collect();
        assert!(stale.is_empty(), "classes of fields not sent: {stale:?}");
        // Downstream-only messages are not in it.
        assert!(!known.iter().any(|f| f.starts_with("DesiredState.")));
        let q = m
            .fields
            .iter()
            .find(|f| f.field == "QueryRecord.query")
            .expect("query text");
        assert_eq!(q.class, Some(Class::RedactedText));
        assert!(q.rpcs.contains("Telemetry"), "{:?}", q.rpcs);
    }

    #[test]
    fn the_security_document_lists_every_field() {
        let doc = include_str!("../../docs/security.md");
        let m = manifest().expect("manifest");
        let missing: Vec<&str> = m
            .fields
            .iter()
            .map(|f| f.field.as_str())
            .filter(|f| !doc.contains(&format!("`{f}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/security.md's egress manifest lacks {missing:?} (tether-agent egress-manifest --markdown prints it)"
        );
    }
}
