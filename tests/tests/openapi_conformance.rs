//! The API against its own OpenAPI document, by schemathesis (PyPI): requests generated
//! from each operation's documented parameters and body schemas, valid and deliberately
//! invalid, against the real control plane binary. It fails on a server error, a status
//! code the document does not list, a response that is not JSON where JSON is documented,
//! and a request the document forbids but the API accepts.
//!
//! Not checked: that every schema-valid request is accepted (`positive_data_acceptance`).
//! Some rules cannot be said in JSON Schema (a catalog a cluster attaches must exist; a
//! worker minimum below its maximum), so the API refuses some requests the schema allows,
//! with a 400 naming the field.

use std::time::Duration;

use tether_tests::harness::{ControlPlaneOptions, ControlPlaneProc, TenantFixture, init};

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
            "[parameters]\n\"path.tenant\" = \"{}\"\n\"path.cp\" = \"{}\"\n\"path.name\" = \"lake\"\n",
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
        .args(["--exclude-checks", "positive_data_acceptance"])
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
