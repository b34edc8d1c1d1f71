//! The API against its own OpenAPI document, by schemathesis (PyPI): requests generated
//! from each operation's documented parameters and body schemas, valid and deliberately
//! invalid, against the real control plane binary. It fails on a server error, a status
//! code the document does not list, a response that is not JSON where JSON is documented,
//! a request the document forbids but the API accepts, and a request the document allows
//! but the API refuses — except for the operations in [`LOOSE`], whose rules JSON Schema
//! cannot say (a worker minimum below its maximum, a catalog that must exist); those
//! answer such a request with a 400 naming the field.

use std::time::Duration;

use tether_tests::harness::{ControlPlaneOptions, ControlPlaneProc, TenantFixture, init};

/// The operations where a schema-valid request may still be refused, and why: rules
/// between fields or against stored state, which JSON Schema cannot say.
const LOOSE: &str = r#"
# A worker minimum must not exceed its maximum; an attached catalog must exist and be listed
# once; CPU and memory are Kubernetes quantities with bounds; node-selector keys and values
# and tolerations follow Kubernetes' label syntax, and a toleration's key may be empty only
# with operator Exists.
[[operations]]
include-operation-id = "put_cluster"
checks.positive_data_acceptance.enabled = false
# Each connector allows its own properties, with values of their own kinds.
[[operations]]
include-operation-id = "put_catalog"
checks.positive_data_acceptance.enabled = false
# Rules hold regular expressions (Java's, checked by Rust's regex), a certificate reference
# names an object, an LDAP URL must be ldaps://.
[[operations]]
include-operation-id = "put_presto_access"
checks.positive_data_acceptance.enabled = false
# The issuer must answer OpenID discovery; an LDAP URL must parse.
[[operations]]
include-operation-id = "put_identity_provider"
checks.positive_data_acceptance.enabled = false
# A support request's reason must not be blank or hold control characters; at most 5 may be
# open per compute plane.
[[operations]]
include-operation-id = "create_support_request"
checks.positive_data_acceptance.enabled = false
# since must be before until, and the range over step at most 10000 points.
[[operations]]
include-operation-id = ["metrics", "get_usage"]
checks.positive_data_acceptance.enabled = false
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_its_openapi_document_says() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    api.as_token(&fx.admin_token)
        .ok_put(
            &format!("/compute-planes/{}/catalogs/lake", fx.cp_id),
            &serde_json::json!({"connector": "hive", "properties": {"hive.metastore": "glue", "hive.metastore.glue.region": "us-east-1"}}),
        )
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The fixture's ids for the path parameters, so operations reach real objects (not only
    // 404s); the platform admin's token.
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[parameters]\n\"path.tenant\" = \"{}\"\n\"path.cp\" = \"{}\"\n\"path.name\" = \"lake\"\n{LOOSE}",
            fx.tenant_id, fx.cp_id
        ),
    )
    .expect("config");
    let bin = std::env::var("TETHER_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    let base = format!("http://{}/api/v1", cp.http);
    let run = tokio::process::Command::new(&bin)
        .arg("--config-file")
        .arg(&config)
        .args([
            "--no-color",
            "run",
            &format!("{base}/openapi.json"),
            "--url",
            &base,
        ])
        .args(["-H", &format!("Authorization: Bearer {}", cp.admin_token())])
        .args([
            "--max-examples",
            "30",
            "--seed",
            "20261202",
            "--workers",
            "1",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .current_dir(dir.path())
        .env("NO_PROXY", "*")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis finished within 10 minutes")
        .unwrap_or_else(|e| {
            panic!("{bin} (scripts/test installs it in target/schemathesis-venv): {e}")
        });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found disagreements:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Tested: 31") || text.contains("Tested:"),
        "{text}"
    );
}
