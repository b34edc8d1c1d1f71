//! Issue 3, acceptance 9 and 10: bad specs are refused naming the field and change
//! nothing; each agent receives only its own compute plane's state.

use serde_json::{Value, json};
use tether_tests::harness::presto_env::{PrestoEnv, cluster_spec, glue_catalog};
use tether_tests::harness::{
    AgentOptions, AgentProc, ControlPlaneOptions, ControlPlaneProc, TenantFixture, init,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_get_400_naming_the_field_and_change_nothing() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let root = cp.api();
    let a = TenantFixture::create(&root, "acme").await;
    let b = TenantFixture::create(&root, "globex").await;
    let api = root.as_token(&a.admin_token);
    let base = format!("/compute-planes/{}", a.cp_id);
    let (s, v) = api
        .put(&format!("{base}/catalogs/lake"), &glue_catalog())
        .await;
    assert!(s.is_success(), "{v}");
    // Another tenant's catalog, in B's compute plane.
    let (s, _) = root
        .as_token(&b.admin_token)
        .put(
            &format!("/compute-planes/{}/catalogs/secret-lake", b.cp_id),
            &glue_catalog(),
        )
        .await;
    assert!(s.is_success());
    let generation = api.ok_get(&base).await["generation"].clone();

    let cluster_cases: Vec<(&str, Value, &str)> = vec![
        (
            "analytics",
            json!({"presto_version": "0.293", "workers": {"count": -3}}),
            "workers.count",
        ),
        (
            "analytics",
            json!({"presto_version": "0.293", "workers": {"count": 1_000_000}}),
            "workers.count",
        ),
        (
            "analytics",
            json!({"presto_version": "0.293", "workers": {"min": 8, "max": 2, "target_cpu_percent": 70}}),
            "workers.min",
        ),
        ("Analytics_1", cluster_spec(3, &[]), "name"),
        (
            "analytics",
            json!({"presto_version": "0.293\nx=1", "workers": {"count": 1}}),
            "presto_version",
        ),
        ("analytics", cluster_spec(3, &["nope"]), "catalogs[0]"),
        (
            "analytics",
            cluster_spec(3, &["lake", "secret-lake"]),
            "catalogs[1]",
        ),
        (
            "analytics",
            json!({"presto_version": "0.293", "workers": {"count": 1}, "worker": {"cpu": "4", "memory": "lots"}}),
            "worker.memory",
        ),
        ("analytics", json!({"presto_version": "0.293"}), "workers"),
    ];
    for (name, body, field) in &cluster_cases {
        let (s, v) = api.put(&format!("{base}/clusters/{name}"), body).await;
        assert_eq!(s.as_u16(), 400, "{name} {body}: {v}");
        assert_eq!(v["error"]["field"], *field, "{name} {body}: {v}");
    }
    let catalog_cases: Vec<(&str, Value, &str)> = vec![
        ("db", json!({"connector": "oracle"}), "connector"),
        (
            "db",
            json!({"connector": "mysql", "properties": {"connection-url": "jdbc:mysql://db:3306", "connection-password": "hunter2"}, "credentials": {"secret_ref": "k8s:db"}}),
            "properties.connection-password",
        ),
        (
            "db",
            json!({"connector": "hive", "properties": {"hive.s3.endpoint": "http://s3\nconnector.name=jmx"}}),
            "properties.hive.s3.endpoint",
        ),
        (
            "db",
            json!({"connector": "hive", "properties": {"hive.metastore.uri=thrift://evil": "x"}}),
            "properties.hive.metastore.uri=thrift://evil",
        ),
        (
            "db",
            json!({"connector": "mysql", "properties": {"connection-url": "jdbc:mysql://db:3306"}}),
            "credentials.secret_ref",
        ),
        ("Bad.Name", glue_catalog(), "name"),
    ];
    for (name, body, field) in &catalog_cases {
        let (s, v) = api.put(&format!("{base}/catalogs/{name}"), body).await;
        assert_eq!(s.as_u16(), 400, "{name} {body}: {v}");
        assert_eq!(v["error"]["field"], *field, "{name} {body}: {v}");
    }
    let (s, v) = api
        .put_raw(
            &format!("{base}/clusters/analytics"),
            r#"{"presto_version": "#,
        )
        .await;
    assert_eq!(s.as_u16(), 400, "{v}");

    // Nothing stored, generation unchanged.
    assert_eq!(api.ok_get(&base).await["generation"], generation);
    assert_eq!(
        api.ok_get(&format!("{base}/clusters")).await["clusters"],
        json!([])
    );
    assert_eq!(
        api.ok_get(&format!("{base}/catalogs")).await["catalogs"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // A viewer cannot change clusters; a catalog in use cannot be deleted.
    let viewer = api
        .ok_post(
            &format!("/tenants/{}/tokens", a.tenant_id),
            &json!({"role": "viewer"}),
        )
        .await;
    let viewer = api.as_token(viewer["token"].as_str().expect("token"));
    let (s, _) = viewer
        .put(
            &format!("{base}/clusters/analytics"),
            &cluster_spec(1, &["lake"]),
        )
        .await;
    assert_eq!(s.as_u16(), 403);
    let (s, _) = api
        .put(
            &format!("{base}/clusters/analytics"),
            &cluster_spec(1, &["lake"]),
        )
        .await;
    assert!(s.is_success());
    let (s, v) = api.delete(&format!("{base}/catalogs/lake")).await;
    assert_eq!(s.as_u16(), 409, "{v}");
    // And tenant B cannot see A's clusters.
    let (s, _) = root
        .as_token(&b.admin_token)
        .get(&format!("{base}/clusters/analytics"))
        .await;
    assert_eq!(s.as_u16(), 404);
}

/// Acceptance 10: two tenants, two agents; each receives only its own compute plane's
/// state (checked in what each agent persisted, and in the objects each applied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agent_receives_only_its_own_state() {
    init();
    let a = PrestoEnv::start().await;
    // Tenant B on the same control plane, with its own agent and namespace.
    let root = a.cp.api();
    let b = TenantFixture::create(&root, "globex").await;
    let b_api = root.as_token(&b.admin_token);
    let b_dir = tempfile::tempdir().expect("tempdir");
    let token = b.enrollment_token(&root, 600).await;
    let _b_agent = AgentProc::start(
        AgentOptions::for_control_plane(&a.cp, b_dir.path().join("agent"), Some(token)).with_args(
            &[
                "--kubeconfig",
                &a.kubeconfig.display().to_string(),
                "--namespace",
                "globex",
                "--resync-interval",
                "2s",
            ],
        ),
    );
    b.connected(&root, 10).await;

    a.put_catalog("lake", glue_catalog()).await;
    a.put_cluster("acme-bi", cluster_spec(1, &["lake"])).await;
    let (s, _) = b_api
        .put(
            &format!("/compute-planes/{}/catalogs/warehouse", b.cp_id),
            &glue_catalog(),
        )
        .await;
    assert!(s.is_success());
    let (s, _) = b_api
        .put(
            &format!("/compute-planes/{}/clusters/globex-etl", b.cp_id),
            &cluster_spec(1, &["warehouse"]),
        )
        .await;
    assert!(s.is_success());
    a.running("acme-bi", 1, 15).await;

    let a_state = a.persisted_desired_state();
    assert!(
        a_state["state"]["clusters"]["acme-bi"].is_object(),
        "{a_state}"
    );
    assert!(
        a_state["state"]["clusters"]["globex-etl"].is_null()
            && a_state["state"]["catalogs"]["warehouse"].is_null(),
        "{a_state}"
    );
    let b_state: Value = tether_tests::harness::eventually(
        std::time::Duration::from_secs(10),
        "B persisted its state",
        || async {
            let v =
                tether_tests::harness::read_persisted_desired_state(&b_dir.path().join("agent"))?;
            v["state"]["clusters"]["globex-etl"]
                .is_object()
                .then_some(v)
        },
    )
    .await;
    assert!(
        b_state["state"]["clusters"]["acme-bi"].is_null()
            && b_state["state"]["catalogs"]["lake"].is_null(),
        "{b_state}"
    );
    // Each agent's objects carry its own compute plane, in its own namespace.
    for obj in a.kube.list("apps/v1", "deployments", Some("globex")) {
        assert_eq!(
            obj["metadata"]["labels"]["tether.io/compute-plane"],
            b.cp_id.as_str()
        );
    }
    for obj in a.kube.list("apps/v1", "deployments", Some("tether")) {
        assert_eq!(
            obj["metadata"]["labels"]["tether.io/compute-plane"],
            a.fx.cp_id.as_str()
        );
    }
}
