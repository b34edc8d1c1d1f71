use super::*;

fn cluster(v: serde_json::Value) -> ClusterSpec {
    serde_json::from_value(v).expect("cluster spec")
}

fn state(generation: i64, clusters: &[(&str, ClusterSpec)]) -> DesiredState {
    DesiredState {
        generation,
        clusters: clusters
            .iter()
            .map(|(n, s)| ((*n).to_owned(), s.clone()))
            .collect(),
        ..Default::default()
    }
}

fn workers(n: u32) -> ClusterSpec {
    cluster(serde_json::json!({"presto_version": "0.289", "workers": {"count": n}}))
}

fn policy(text: &str) -> Policy {
    Policy::parse(text).expect("policy")
}

fn rules(o: &Outcome) -> Vec<(&str, &str, &str)> {
    o.refusals
        .iter()
        .map(|r| (r.cluster.as_str(), r.rule, r.value.as_str()))
        .collect()
}

const NOW: u64 = 1_796_428_800_000; // Saturday 2026-12-05 00:00 UTC

#[test]
fn a_refused_change_keeps_the_cluster_while_the_rest_applies() {
    let p = policy("max_workers_per_cluster = 8\n");
    let before = state(1, &[("a", workers(2)), ("b", workers(2))]);
    let doc = state(
        2,
        &[("a", workers(12)), ("b", workers(3)), ("c", workers(9))],
    );
    let o = evaluate(&p, &doc, &before, &BTreeSet::new(), NOW);
    assert_eq!(o.effective.generation, 2);
    assert_eq!(o.effective.clusters["a"], workers(2), "kept as it was");
    assert_eq!(
        o.effective.clusters["b"],
        workers(3),
        "allowed change applied"
    );
    assert!(
        !o.effective.clusters.contains_key("c"),
        "refused new cluster"
    );
    assert_eq!(
        rules(&o),
        [
            ("a", "max_workers_per_cluster", "12"),
            ("c", "max_workers_per_cluster", "9")
        ]
    );
    let c = o.refusals[0].condition();
    assert_eq!(
        (c.r#type.as_str(), c.reason.as_str()),
        ("GuardrailRefused", "MaxWorkersPerCluster")
    );
    assert!(
        c.message.contains("max_workers_per_cluster (12)"),
        "{}",
        c.message
    );
    assert!(o.refusals[1].message.contains("not created"));
}

#[test]
fn each_cluster_rule_names_its_value() {
    let p = policy(
        r#"
max_worker_cpu = "2"
max_worker_memory = "8Gi"
allowed_presto_versions = ["0.289"]
allowed_image_registries = ["registry.example.com"]
"#,
    );
    let big = cluster(serde_json::json!({
        "presto_version": "0.290", "workers": {"min": 1, "max": 3},
        "worker": {"cpu": "2500m", "memory": "16Gi"},
    }));
    let o = evaluate(
        &p,
        &state(1, &[("x", big)]),
        &DesiredState::default(),
        &BTreeSet::new(),
        NOW,
    );
    assert_eq!(
        rules(&o),
        [
            ("x", "max_worker_cpu", "2500m"),
            ("x", "max_worker_memory", "16Gi"),
            ("x", "allowed_presto_versions", "0.290"),
            ("x", "allowed_image_registries", "prestodb/presto:0.290"),
        ]
    );
    assert!(o.effective.clusters.is_empty());
}

#[test]
fn registries_are_read_as_a_container_runtime_does() {
    assert_eq!(registry_of("prestodb/presto:0.289"), "docker.io");
    assert_eq!(registry_of("apache/hive:4.0.0"), "docker.io");
    assert_eq!(registry_of("busybox"), "docker.io");
    assert_eq!(registry_of("localhost/presto:1"), "localhost");
    assert_eq!(
        registry_of("1234.dkr.ecr.us-east-1.amazonaws.com/presto:1"),
        "1234.dkr.ecr.us-east-1.amazonaws.com"
    );
    assert_eq!(registry_of("reg:5000/presto"), "reg:5000");
}

#[test]
fn the_total_counts_running_clusters_first() {
    let p = policy("max_workers_total = 10\n");
    let before = state(1, &[("a", workers(4)), ("b", workers(4))]);
    // b grows past the total; a is unchanged; c is new and fits only if b does not grow.
    let doc = state(
        2,
        &[("a", workers(4)), ("b", workers(7)), ("c", workers(2))],
    );
    let o = evaluate(&p, &doc, &before, &BTreeSet::new(), NOW);
    assert_eq!(rules(&o), [("b", "max_workers_total", "11")]);
    assert_eq!(o.effective.clusters["b"], workers(4));
    assert_eq!(o.effective.clusters["c"], workers(2));
}

fn catalog(v: serde_json::Value) -> CatalogSpec {
    serde_json::from_value(v).expect("catalog")
}

#[test]
fn catalogs_are_limited_by_connector_and_host() {
    let p = policy(
        "allowed_connectors = [\"postgresql\", \"hive\"]\nallowed_catalog_hosts = [\"*.internal\", \"10.0.0.0/8\"]\n",
    );
    let pg = |url: &str| {
        catalog(
            serde_json::json!({"connector": "postgresql", "properties": {"connection-url": url},
            "credentials": {"secret_ref": "k8s:pg"}}),
        )
    };
    let my = catalog(
        serde_json::json!({"connector": "mysql", "properties": {"connection-url": "jdbc:mysql://db.internal:3306"},
        "credentials": {"secret_ref": "k8s:my"}}),
    );
    let with = |cats: &[&str]| {
        cluster(
            serde_json::json!({"presto_version": "0.289", "workers": {"count": 1}, "catalogs": cats}),
        )
    };
    let mut before = state(1, &[("a", with(&["sales"]))]);
    before
        .catalogs
        .insert("sales".into(), pg("jdbc:postgresql://10.1.2.3:5432/sales"));
    let mut doc = state(
        2,
        &[
            ("a", with(&["sales"])),
            ("b", with(&["shop"])),
            ("c", with(&["ok"])),
        ],
    );
    doc.catalogs.insert(
        "sales".into(),
        pg("jdbc:postgresql://evil.example.com:5432/sales"),
    );
    doc.catalogs.insert("shop".into(), my);
    doc.catalogs
        .insert("ok".into(), pg("jdbc:postgresql://db.internal/x"));
    let o = evaluate(&p, &doc, &before, &BTreeSet::new(), NOW);
    assert_eq!(
        rules(&o),
        [
            ("a", "allowed_catalog_hosts", "sales"),
            ("b", "allowed_connectors", "shop"),
        ]
    );
    assert_eq!(
        o.effective.catalogs["sales"], before.catalogs["sales"],
        "kept as it was"
    );
    assert!(!o.effective.catalogs.contains_key("shop"));
    assert!(
        o.effective.clusters.contains_key("a"),
        "a runs on with the old catalog"
    );
    assert!(
        !o.effective.clusters.contains_key("b"),
        "b would need the refused catalog"
    );
    assert!(o.effective.clusters.contains_key("c"));
    assert!(o.effective.validate().is_ok());
}

#[test]
fn deletes_wait_for_a_local_approval() {
    let p = policy("deletes = \"local-approval\"\n");
    let before = state(1, &[("a", workers(1)), ("b", workers(1))]);
    let doc = state(2, &[("a", workers(1))]);
    let o = evaluate(&p, &doc, &before, &BTreeSet::new(), NOW);
    assert_eq!(o.pending_deletes, ["b"]);
    assert_eq!(rules(&o), [("b", "deletes", "local-approval")]);
    assert!(o.effective.clusters.contains_key("b"));
    let approved: BTreeSet<String> = ["b".to_owned()].into();
    let o = evaluate(&p, &doc, &o.effective, &approved, NOW);
    assert!(o.pending_deletes.is_empty() && o.refusals.is_empty());
    assert_eq!(o.approved_deletes, ["b"]);
    assert!(!o.effective.clusters.contains_key("b"));
    // Without the rule a delete is applied at once.
    let o = evaluate(&Policy::default(), &doc, &before, &BTreeSet::new(), NOW);
    assert!(!o.effective.clusters.contains_key("b"));
}

#[test]
fn pod_replacing_changes_wait_for_a_window() {
    // Windows on Sunday only; NOW is Saturday.
    let p =
        policy("[[maintenance_windows]]\ndays = [\"sun\"]\nstart = \"02:00\"\nend = \"04:00\"\n");
    let before = state(1, &[("a", workers(2))]);
    let mut upgraded = workers(5);
    upgraded.presto_version = "0.290".into();
    let doc = state(2, &[("a", upgraded.clone()), ("n", workers(1))]);
    let o = evaluate(&p, &doc, &before, &BTreeSet::new(), NOW);
    let mut expect = workers(5);
    expect.presto_version = "0.289".into();
    assert_eq!(
        o.effective.clusters["a"], expect,
        "count applied, version held"
    );
    assert!(
        o.effective.clusters.contains_key("n"),
        "a new cluster replaces no pods"
    );
    assert_eq!(
        rules(&o),
        [("a", "maintenance_windows", "sun 02:00-04:00 UTC")]
    );
    // Sunday 02:30 the window is open.
    let open = NOW + (24 * 60 + 150) * 60_000;
    let o = evaluate(&p, &doc, &o.effective, &BTreeSet::new(), open);
    assert_eq!(o.effective.clusters["a"], upgraded);
    assert!(o.refusals.is_empty());
}

#[test]
fn query_text_is_never_raised_above_the_policy() {
    let p = policy("max_query_text = \"redacted\"\n");
    let mut doc = state(1, &[]);
    doc.settings
        .insert(crate::collect::REDACTION_SETTING.into(), "full".into());
    let o = evaluate(&p, &doc, &DesiredState::default(), &BTreeSet::new(), NOW);
    assert_eq!(
        o.effective.settings[crate::collect::REDACTION_SETTING],
        "redacted"
    );
    assert_eq!(rules(&o), [("", "max_query_text", "full")]);
    doc.settings
        .insert(crate::collect::REDACTION_SETTING.into(), "none".into());
    let o = evaluate(&p, &doc, &DesiredState::default(), &BTreeSet::new(), NOW);
    assert_eq!(
        o.effective.settings[crate::collect::REDACTION_SETTING],
        "none"
    );
    assert!(o.refusals.is_empty());
    let none = policy("max_query_text = \"none\"\n");
    let o = evaluate(
        &none,
        &state(1, &[]),
        &DesiredState::default(),
        &BTreeSet::new(),
        NOW,
    );
    assert_eq!(
        o.effective.settings[crate::collect::REDACTION_SETTING],
        "none",
        "the default (redacted) is lowered too"
    );
}

#[test]
fn an_empty_policy_applies_the_document_as_sent() {
    let doc = state(3, &[("a", workers(500))]);
    let o = evaluate(
        &Policy::default(),
        &doc,
        &DesiredState::default(),
        &BTreeSet::new(),
        NOW,
    );
    assert_eq!(o.effective, doc);
    assert!(o.refusals.is_empty());
}

#[test]
fn the_total_is_a_hard_bound_and_refuses_the_change_that_grows() {
    let p = policy("max_workers_total = 10\ndeletes = \"local-approval\"\n");
    // a grows; b keeps its size but upgrades: a is refused, b applies.
    let before = state(1, &[("a", workers(5)), ("b", workers(5))]);
    let mut upgraded = workers(5);
    upgraded.presto_version = "0.290".into();
    let doc = state(2, &[("a", workers(8)), ("b", upgraded.clone())]);
    let o = evaluate(&p, &doc, &before, &BTreeSet::new(), NOW);
    assert_eq!(rules(&o), [("a", "max_workers_total", "13")]);
    assert_eq!(o.effective.clusters["a"], workers(5));
    assert_eq!(o.effective.clusters["b"], upgraded);
    // A cluster waiting for its delete's approval still runs, so still counts.
    let before = state(1, &[("x", workers(8))]);
    let doc = state(2, &[("y", workers(8))]);
    let o = evaluate(&p, &doc, &before, &BTreeSet::new(), NOW);
    assert_eq!(
        rules(&o),
        [
            ("x", "deletes", "local-approval"),
            ("y", "max_workers_total", "16")
        ]
    );
    assert!(!o.effective.clusters.contains_key("y"));
    let total: u32 = o
        .effective
        .clusters
        .values()
        .map(|c| max_workers(&c.workers))
        .sum();
    assert!(total <= 10, "{total}");
}

#[test]
fn every_host_a_catalog_names_is_checked_and_an_unreadable_one_refused() {
    let p = policy("allowed_catalog_hosts = [\"*.internal\"]\n");
    let check = |v: serde_json::Value| catalog_violation(&p, "c", &catalog(v)).map(|(r, _)| r);
    let creds = serde_json::json!({"secret_ref": "k8s:pg"});
    assert_eq!(
        check(serde_json::json!({"connector": "postgresql",
        "properties": {"connection-url": "JDBC:PostgreSQL://evil.example.com:5432/x"}, "credentials": creds})),
        Some("allowed_catalog_hosts"),
        "the scheme in any case"
    );
    assert_eq!(
        check(serde_json::json!({"connector": "postgresql",
        "properties": {"connection-url": "jdbc:postgresql://db.internal:5432/x"}, "credentials": creds})),
        None
    );
    assert_eq!(
        check(serde_json::json!({"connector": "hive",
        "properties": {"hive.metastore": "glue", "hive.s3.endpoint": "https://s3.evil.example.com"}})),
        Some("allowed_catalog_hosts"),
        "a custom S3 endpoint"
    );
    assert_eq!(
        check(serde_json::json!({"connector": "hive",
        "properties": {"hive.metastore": "glue", "hive.s3.endpoint": "https://minio.internal:9000"}})),
        None
    );
    assert_eq!(
        check(serde_json::json!({"connector": "hive",
        "properties": {"hive.metastore.uri": "thrift://ms.internal:9083,thrift://ms2.evil.com:9083"}})),
        Some("allowed_catalog_hosts"),
        "every URI of a list"
    );
    assert_eq!(
        check(serde_json::json!({"connector": "hive",
        "properties": {"hive.metastore": "glue"}})),
        None,
        "Glue names no host"
    );
}
