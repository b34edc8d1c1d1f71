//! `tether-agent egress-manifest`, as a security reviewer runs it: every field the agent
//! can send, each with a class, the query text among them only as redacted text and a
//! support bundle only as its own class.

use serde_json::Value;
use tether_tests::harness::bin_path;

#[test]
fn the_agent_prints_every_upstream_field_with_its_class() {
    let out = std::process::Command::new(bin_path("tether-agent"))
        .arg("egress-manifest")
        .output()
        .expect("tether-agent egress-manifest");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let fields = m["fields"].as_array().expect("fields");
    assert!(fields.len() > 50, "{m}");
    let classes = [
        "identity",
        "status",
        "metrics",
        "query_metadata",
        "redacted_text",
        "support_bundle",
        "framing",
    ];
    for f in fields {
        assert!(
            f["class"].as_str().is_some_and(|c| classes.contains(&c)),
            "{f}"
        );
    }
    let class_of = |name: &str| {
        fields
            .iter()
            .find(|f| f["field"] == name)
            .map(|f| f["class"].clone())
    };
    assert_eq!(class_of("QueryRecord.query"), Some("redacted_text".into()));
    // A support bundle's content is a class of its own: sent only after local approval.
    assert_eq!(
        class_of("SupportFile.content"),
        Some("support_bundle".into())
    );
    assert_eq!(
        class_of("QueryRecord.error_message"),
        Some("redacted_text".into())
    );
    assert_eq!(
        class_of("EnrollRequest.bootstrap_token"),
        Some("identity".into())
    );
    assert_eq!(class_of("DesiredState.clusters"), None, "downstream only");
    let md = std::process::Command::new(bin_path("tether-agent"))
        .args(["egress-manifest", "--markdown"])
        .output()
        .expect("--markdown");
    let table = String::from_utf8_lossy(&md.stdout);
    assert!(
        table.contains("| `QueryRecord.query` | string | redacted_text | Telemetry |"),
        "{table}"
    );
}
