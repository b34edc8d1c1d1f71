//! Catalog credentials by reference, resolved in the VPC: a Secrets Manager secret (moto)
//! becomes the Kubernetes Secret the Presto pods read, a rotation rolls the workers, and
//! every way it can go wrong is a condition on the cluster that names the secret, never
//! its value.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tether_tests::harness::moto::Moto;
use tether_tests::harness::presto_env::{FAST_AGENT, PrestoEnv, cluster_spec};
use tether_tests::harness::{eventually, init};

const PASSWORD: &str = "pa$$w\\rd-ro7ate-me";
const ROTATED: &str = "n3w-$ecret\\value";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn mysql_with(secret_ref: &str, user: Option<&str>) -> Value {
    let mut props = json!({"connection-url": "jdbc:mysql://orders-db:3306"});
    if let Some(u) = user {
        props["connection-user"] = json!(u);
    }
    json!({"connector": "mysql", "properties": props, "credentials": {"secret_ref": secret_ref}})
}

/// Restarts the agent reading secrets from moto (refreshed every second), with `extra`.
fn start_agent(env: &mut PrestoEnv, moto: &Moto, extra: &[&str]) {
    let mut args = FAST_AGENT.to_vec();
    args.extend([
        "--secrets-manager-endpoint",
        moto.url.as_str(),
        "--secret-refresh",
        "1s",
        "--aws-region",
        "us-east-1",
    ]);
    args.extend(extra);
    env.start_agent_with_env(
        &args,
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
}

/// The `CatalogCredentials` condition of a cluster: (status, reason, message).
async fn credentials(env: &PrestoEnv, cluster: &str) -> Option<(String, String, String)> {
    let c = env.cluster(cluster).await;
    let found = c["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "CatalogCredentials")?
        .clone();
    let s = |k: &str| found[k].as_str().unwrap_or("").to_owned();
    Some((s("status"), s("reason"), s("message")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_credentials_sync_rotate_and_fail_clearly() {
    init();
    let moto = Moto::start().await;
    let mut env = PrestoEnv::start().await;
    start_agent(&mut env, &moto, &[]);
    let created = moto
        .secrets(
            "CreateSecret",
            &json!({"Name": "orders-db", "SecretString": json!({"username": "app", "password": PASSWORD}).to_string()}),
        )
        .await;
    let arn = created["ARN"].as_str().expect("ARN").to_owned();

    env.put_catalog("orders", mysql_with(&arn, None)).await;
    env.put_cluster("analytics", cluster_spec(2, &["orders"]))
        .await;
    env.running("analytics", 2, 30).await;
    let secret = eventually(
        Duration::from_secs(20),
        "tether-catalog-orders written",
        || async { env.object("v1", "secrets", "tether-catalog-orders") },
    )
    .await;
    assert_eq!(secret["data"]["username"], b64("app"));
    assert_eq!(
        secret["data"]["password"],
        b64(PASSWORD),
        "exactly, $ and \\ included"
    );
    let worker = env
        .object("apps/v1", "deployments", "analytics-worker")
        .expect("workers");
    assert!(
        worker.to_string().contains("tether-catalog-orders"),
        "the workers read it"
    );
    let hash = |d: &Value| {
        d["spec"]["template"]["metadata"]["annotations"]["tether.io/catalog-hash"].clone()
    };
    let before = hash(&worker);

    // Rotation: a new version reaches the Secret and rolls the workers.
    moto.secrets(
        "PutSecretValue",
        &json!({"SecretId": arn, "SecretString": json!({"username": "app", "password": ROTATED}).to_string()}),
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the rotated password synced",
        || async {
            let s = env.object("v1", "secrets", "tether-catalog-orders")?;
            (s["data"]["password"] == b64(ROTATED)).then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(20), "the workers rolled", || async {
        let d = env.object("apps/v1", "deployments", "analytics-worker")?;
        (hash(&d) != before).then_some(())
    })
    .await;

    // A secret that does not exist, one of the wrong shape, and a missing k8s Secret:
    // each a condition on its cluster, naming the reference, never a value.
    let missing = arn.replace("orders-db", "no-such-secret");
    let plain = moto
        .secrets(
            "CreateSecret",
            &json!({"Name": "plain", "SecretString": PASSWORD}),
        )
        .await["ARN"]
        .as_str()
        .expect("ARN")
        .to_owned();
    env.put_catalog("ghost", mysql_with(&missing, None)).await;
    env.put_catalog("plain", mysql_with(&plain, None)).await;
    env.put_catalog("local", mysql_with("k8s:not-created-yet", None))
        .await;
    for (cluster, catalog, reason) in [
        ("ghosts", "ghost", "SecretNotFound"),
        ("plains", "plain", "SecretShape"),
        ("locals", "local", "SecretMissing"),
    ] {
        env.put_cluster(cluster, cluster_spec(1, &[catalog])).await;
        let (status, got, message) = eventually(
            Duration::from_secs(20),
            &format!("{cluster}: CatalogCredentials {reason}"),
            || async {
                credentials(&env, cluster)
                    .await
                    .filter(|(_, r, _)| r == reason)
            },
        )
        .await;
        assert_eq!((status.as_str(), got.as_str()), ("False", reason));
        assert!(message.contains(&format!("catalog {catalog}")), "{message}");
        assert!(!message.contains(PASSWORD), "{message}");
        // Left out of the cluster meanwhile: a pod referring to a missing Secret would
        // never start, and the coordinator is the only one.
        let files = env
            .object("v1", "configmaps", &format!("{cluster}-catalog"))
            .expect("catalog ConfigMap");
        assert!(
            files["data"][format!("{catalog}.properties")].is_null(),
            "{cluster}: {files}"
        );
    }
    // A plain-string secret is the password when the catalog names its user.
    env.put_catalog("plain", mysql_with(&plain, Some("reporter")))
        .await;
    eventually(
        Duration::from_secs(20),
        "the plain secret synced",
        || async {
            let s = env.object("v1", "secrets", "tether-catalog-plain")?;
            (s["data"]["username"] == b64("reporter") && s["data"]["password"] == b64(PASSWORD))
                .then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "plain loaded into plains",
        || async {
            let files = env.object("v1", "configmaps", "plains-catalog")?;
            files["data"]["plain.properties"].is_string().then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "plains: the condition cleared",
        || async { credentials(&env, "plains").await.is_none().then_some(()) },
    )
    .await;
    // The first cluster never lost its credentials meanwhile.
    assert_eq!(
        env.object("v1", "secrets", "tether-catalog-orders")
            .expect("kept")["data"]["password"],
        b64(ROTATED)
    );
    // No cluster attaches `plain` any more: its synced Secret goes.
    env.put_cluster("plains", cluster_spec(1, &[])).await;
    eventually(
        Duration::from_secs(20),
        "tether-catalog-plain deleted",
        || async {
            env.object("v1", "secrets", "tether-catalog-plain")
                .is_none()
                .then_some(())
        },
    )
    .await;
    // The values stayed in the VPC: not in the control plane's log, nor the agent's.
    let logs = format!(
        "{}{}",
        env.cp.log(),
        env.agent.as_ref().map(|a| a.log()).unwrap_or_default()
    );
    for secret in [PASSWORD, ROTATED] {
        assert!(!logs.contains(secret), "a secret value in a log");
    }
}

/// The install's metastore database: the agent keeps `tether-metastore-db` from the
/// RDS-managed secret, the metastore connects with it over TLS, and a rotation (RDS rotates
/// every seven days) restarts the metastore with the new password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metastore_database_secret_is_synced_and_rotation_restarts_the_metastore() {
    init();
    let moto = Moto::start().await;
    let mut env = PrestoEnv::start().await;
    let rds = moto
        .secrets(
            "CreateSecret",
            &json!({"Name": "rds!db-1234", "SecretString": json!({"username": "hive", "password": PASSWORD}).to_string()}),
        )
        .await;
    let arn = rds["ARN"].as_str().expect("ARN").to_owned();
    start_agent(
        &mut env,
        &moto,
        &[
            "--metastore-db-endpoint",
            "tether-db.example.rds.amazonaws.com:5432",
            "--metastore-db-secret-arn",
            arn.as_str(),
        ],
    );
    env.put_catalog("lake", tether_tests::harness::presto_env::glue_catalog())
        .await;
    let mut spec = cluster_spec(1, &["lake"]);
    spec["hive_metastore"] = json!({"enabled": true, "warehouse": "s3://lake/warehouse"});
    env.put_cluster("analytics", spec).await;
    let secret = eventually(Duration::from_secs(20), "tether-metastore-db", || async {
        env.object("v1", "secrets", "tether-metastore-db")
    })
    .await;
    assert_eq!(secret["data"]["username"], b64("hive"));
    assert_eq!(secret["data"]["password"], b64(PASSWORD));
    let metastore = || env.object("apps/v1", "deployments", "analytics-hive-metastore");
    let version = |d: &Value| {
        d["spec"]["template"]["metadata"]["annotations"]["tether.io/metastore-db-version"].clone()
    };
    let before = eventually(
        Duration::from_secs(20),
        "the metastore Deployment",
        || async { metastore().filter(|d| version(d).as_str().is_some_and(|v| !v.is_empty())) },
    )
    .await;
    // The connection is in the Secret's hive-site.xml, not in the Deployment.
    let site = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["hive-site.xml"].as_str().unwrap_or_default())
        .expect("base64");
    let site = String::from_utf8_lossy(&site).into_owned();
    assert!(
        site.contains(
            "jdbc:postgresql://tether-db.example.rds.amazonaws.com:5432/metastore?sslmode=require"
        ),
        "{site}"
    );
    assert!(
        !before.to_string().contains(PASSWORD)
            && !before.to_string().contains("ConnectionPassword"),
        "no credential in the Deployment"
    );
    moto.secrets(
        "PutSecretValue",
        &json!({"SecretId": arn, "SecretString": json!({"username": "hive", "password": ROTATED}).to_string()}),
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the rotated password synced",
        || async {
            let s = env.object("v1", "secrets", "tether-metastore-db")?;
            (s["data"]["password"] == b64(ROTATED)).then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the metastore restarted",
        || async { metastore().filter(|d| version(d) != version(&before)) },
    )
    .await;
}
