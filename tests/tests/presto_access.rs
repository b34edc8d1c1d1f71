//! Who may query Presto, end to end through the real binaries: a rules document put through
//! the API reaches every cluster of the compute plane as the agent's `<cluster>-access`
//! ConfigMap and `access-control.properties`; a change to the catalog rules is only a
//! ConfigMap update (Presto re-reads the file every `security.refresh-period`), so no pod is
//! replaced; removing the document prunes it. Bad documents are refused with the field named
//! and nothing changes.

use std::time::Duration;

use serde_json::{Value, json};
use tether_tests::harness::presto_env::{PrestoEnv, cluster_spec, glue_catalog};
use tether_tests::harness::{eventually, init};

fn rules(alice: &str) -> Value {
    json!({
        "authentication": {"kind": "none"},
        "rules": {"catalogs": [
            {"user": "alice", "catalog": "lake", "allow": alice},
            {"catalog": "system", "allow": "read-only"}
        ]},
        "table_rules": {"lake": [
            {"user": "alice", "schema": "sales", "privileges": ["SELECT"]}
        ]}
    })
}

/// The `rules.json` of the cluster's access ConfigMap, parsed.
fn rules_json(env: &PrestoEnv, cluster: &str) -> Option<Value> {
    let cm = env.object("v1", "configmaps", &format!("{cluster}-access"))?;
    serde_json::from_str(cm["data"]["rules.json"].as_str()?).ok()
}

/// The uids of the pods in the stand-in's namespace.
fn pods(env: &PrestoEnv) -> Vec<String> {
    let mut names: Vec<String> = env
        .kube
        .list("v1", "pods", Some("tether"))
        .iter()
        .filter_map(|p| p["metadata"]["uid"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// The pod uids once two clusters' pods (`count` in all) have stopped changing: a
/// coordinator roll from an earlier change has finished.
async fn settled_pods(env: &PrestoEnv, count: usize) -> Vec<String> {
    eventually(Duration::from_secs(30), "pods settled", || async {
        let first = pods(env);
        tokio::time::sleep(Duration::from_secs(2)).await;
        (first.len() == count && pods(env) == first).then_some(first)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_rules_reach_every_cluster_and_change_without_restarts() {
    init();
    let env = PrestoEnv::start().await;
    let cp = env.fx.cp_id.clone();
    let path = format!("/compute-planes/{cp}/presto-access");
    env.put_catalog("lake", glue_catalog()).await;
    env.put_cluster("analytics", cluster_spec(1, &["lake"]))
        .await;
    env.put_cluster("adhoc", cluster_spec(1, &["lake"])).await;
    env.running("analytics", 1, 30).await;
    env.running("adhoc", 1, 30).await;
    assert_eq!(
        env.api().get(&path).await.0,
        404,
        "no document until one is put"
    );

    // Refusals name the field and change nothing.
    let mut bad = rules("read-only");
    bad["rules"]["catalogs"][0]["allow"] = json!("everything");
    let (s, v) = env.api().put(&path, &bad).await;
    assert_eq!(s, 400, "{v}");
    let mut bad = rules("read-only");
    bad["table_rules"] = json!({"nowhere": [{"privileges": ["SELECT"]}]});
    let (s, v) = env.api().put(&path, &bad).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["field"], "table_rules.nowhere", "{v}");
    let mut bad = rules("read-only");
    bad["authentication"] = json!({"kind": "ldap", "url": "ldap://dir.corp:389", "user_bind_pattern": "uid=${USER},ou=people"});
    let (s, v) = env.api().put(&path, &bad).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["field"], "authentication.url", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("ldaps://"),
        "{v}"
    );
    // Below admin: 403.
    let viewer = env
        .cp
        .api()
        .ok_post(
            &format!("/tenants/{}/tokens", env.fx.tenant_id),
            &json!({"role": "operator"}),
        )
        .await;
    let operator = env
        .cp
        .api()
        .as_token(viewer["token"].as_str().expect("token"));
    assert_eq!(operator.put(&path, &rules("read-only")).await.0, 403);
    assert_eq!(operator.get(&path).await.0, 404, "operators may read it");
    // Another tenant cannot see or write this compute plane.
    let other = tether_tests::harness::TenantFixture::create(&env.cp.api(), "globex").await;
    let other = env.cp.api().as_token(&other.admin_token);
    assert_eq!(other.put(&path, &rules("all")).await.0, 404);
    assert!(env.object("v1", "configmaps", "analytics-access").is_none());

    // The document reaches both clusters.
    let put = env.api().ok_put(&path, &rules("read-only")).await;
    assert!(put["generation"].as_u64().is_some(), "{put}");
    for cluster in ["analytics", "adhoc"] {
        let r = eventually(
            Duration::from_secs(20),
            &format!("{cluster}-access rendered"),
            || async { rules_json(&env, cluster) },
        )
        .await;
        assert_eq!(r["catalogs"][0]["user"], "alice");
        assert_eq!(r["catalogs"][0]["allow"], "read-only");
        let coordinator = env
            .object("v1", "configmaps", &format!("{cluster}-coordinator"))
            .expect("coordinator config");
        let props = coordinator["data"]["access-control.properties"]
            .as_str()
            .unwrap_or("");
        assert!(props.contains("access-control.name=file"), "{props}");
        assert!(props.contains("security.refresh-period="), "{props}");
        let tables = env
            .object("v1", "configmaps", &format!("{cluster}-access"))
            .expect("access")["data"]["lake-tables.json"]
            .clone();
        assert!(tables.as_str().unwrap_or("").contains("sales"), "{tables}");
    }
    env.running("analytics", 1, 30).await;
    env.running("adhoc", 1, 30).await;
    let got = env.api().ok_get(&path).await;
    let want = rules("read-only");
    assert_eq!(
        got["presto_access"]["rules"]["catalogs"], want["rules"]["catalogs"],
        "{got}"
    );
    assert_eq!(
        got["presto_access"]["table_rules"], want["table_rules"],
        "{got}"
    );

    // A catalog the table rules name cannot be deleted.
    let (s, v) = env
        .api()
        .delete(&format!("/compute-planes/{cp}/catalogs/lake"))
        .await;
    assert_eq!(s, 409, "{v}");

    // A change to the catalog rules: the ConfigMap changes, no pod is replaced.
    let before = settled_pods(&env, 4).await;
    env.api().ok_put(&path, &rules("none")).await;
    eventually(Duration::from_secs(20), "the new rule applied", || async {
        (rules_json(&env, "analytics")?["catalogs"][0]["allow"] == "none").then_some(())
    })
    .await;
    env.running("analytics", 1, 30).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pods(&env), before, "no pod replaced by a rule change");

    // Removed: the ConfigMaps go, and so does the access-control file.
    let (s, _) = env.api().delete(&path).await;
    assert_eq!(s, 204);
    eventually(
        Duration::from_secs(20),
        "access ConfigMaps pruned",
        || async {
            (env.object("v1", "configmaps", "analytics-access").is_none()
                && env.object("v1", "configmaps", "adhoc-access").is_none())
            .then_some(())
        },
    )
    .await;
    let coordinator = env
        .object("v1", "configmaps", "analytics-coordinator")
        .expect("coordinator config");
    assert!(
        coordinator["data"]
            .get("access-control.properties")
            .is_none()
    );
    assert_eq!(env.api().get(&path).await.0, 404);
    // And with no table rules left, the catalog may go.
    env.put_cluster("analytics", cluster_spec(1, &[])).await;
    env.put_cluster("adhoc", cluster_spec(1, &[])).await;
    let (s, v) = env
        .api()
        .delete(&format!("/compute-planes/{cp}/catalogs/lake"))
        .await;
    assert_eq!(s, 204, "{v}");
}

fn ldap_access(extra: Value) -> Value {
    let mut doc = json!({
        "authentication": {"kind": "ldap", "url": "ldaps://dir.corp:636",
            "user_bind_pattern": "uid=${USER},ou=people,dc=corp",
            "ca_pem": "-----BEGIN CERTIFICATE-----\nMIIBdirectoryca\n-----END CERTIFICATE-----\n"},
        "rules": {"catalogs": [{"user": "alice", "allow": "read-only"}]}
    });
    if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    doc
}

/// A Secret's key, decoded.
fn secret_text(env: &PrestoEnv, name: &str, key: &str) -> Option<String> {
    use base64::Engine as _;
    let s = env.object("v1", "secrets", name)?;
    let b = base64::engine::general_purpose::STANDARD
        .decode(s["data"][key].as_str()?)
        .ok()?;
    String::from_utf8(b).ok()
}

/// The cluster's condition `kind`: (status, message).
async fn condition(env: &PrestoEnv, cluster: &str, kind: &str) -> Option<(String, String)> {
    let c = env.cluster(cluster).await;
    let found = c["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?
        .clone();
    Some((
        found["status"].as_str()?.to_owned(),
        found["message"].as_str().unwrap_or("").to_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_puts_the_coordinator_behind_https_with_a_certificate_from_the_vpc() {
    init();
    let mut env = PrestoEnv::start().await;
    // Certificates that live seconds, so a renewal happens during the test.
    let mut args = tether_tests::harness::presto_env::FAST_AGENT.to_vec();
    args.extend(["--presto-cert-validity", "9s"]);
    env.start_agent_with(None, &args);
    env.fx.connected(&env.cp.api(), 10).await;
    let path = format!("/compute-planes/{}/presto-access", env.fx.cp_id);
    env.put_catalog("lake", glue_catalog()).await;
    env.put_cluster("analytics", cluster_spec(1, &["lake"]))
        .await;
    env.running("analytics", 1, 30).await;
    let svc = env.object("v1", "services", "analytics").expect("service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);

    env.api().ok_put(&path, &ldap_access(json!({}))).await;
    // The CA is made in the VPC: its key in a Secret, its certificate for clients.
    let ca = eventually(Duration::from_secs(20), "the Presto CA", || async {
        let key = secret_text(&env, "tether-presto-ca", "ca.key")?;
        assert!(key.contains("PRIVATE KEY"));
        env.object("v1", "configmaps", "tether-presto-ca")?["data"]["ca.crt"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    let keystore = eventually(
        Duration::from_secs(20),
        "the coordinator keystore",
        || async { secret_text(&env, "tether-tls-analytics", "keystore.pem") },
    )
    .await;
    assert!(keystore.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(
        keystore.ends_with(&ca),
        "the chain ends with the published CA"
    );
    let svc = eventually(
        Duration::from_secs(20),
        "the client Service HTTPS only",
        || async {
            let s = env.object("v1", "services", "analytics")?;
            (s["spec"]["ports"].as_array()?.len() == 1 && s["spec"]["ports"][0]["port"] == 8443)
                .then_some(s)
        },
    )
    .await;
    assert_eq!(svc["spec"]["ports"][0]["name"], "https");
    assert!(env.object("v1", "services", "analytics-internal").is_some());
    let np = env
        .object(
            "networking.k8s.io/v1",
            "networkpolicies",
            "analytics-coordinator",
        )
        .expect("network policy");
    assert_eq!(np["spec"]["ingress"][1]["ports"][0]["port"], 8080);
    let coordinator = env
        .object("v1", "configmaps", "analytics-coordinator")
        .expect("coordinator config");
    assert!(
        coordinator["data"]["password-authenticator.properties"]
            .as_str()
            .unwrap_or("")
            .contains("ldap.url=ldaps://dir.corp:636")
    );
    assert_eq!(
        env.object("v1", "configmaps", "analytics-ldap-ca")
            .expect("ldap ca")["data"]["ca.crt"]
            .as_str()
            .map(|s| s.contains("MIIBdirectoryca")),
        Some(true)
    );
    let c = env.running("analytics", 1, 30).await;
    assert_eq!(
        c["status"]["endpoint"],
        "https://analytics.tether.svc.cluster.local:8443"
    );

    // Renewal: a new certificate (same CA) before the old one runs out, and the
    // coordinator is replaced to read it; the workers keep running.
    // (The switch to HTTPS rolled the workers too: discovery moved to the internal
    // Service. Let that roll finish first.)
    settled_pods(&env, 2).await;
    let first = secret_text(&env, "tether-tls-analytics", "keystore.pem").expect("keystore");
    let workers = |env: &PrestoEnv| {
        env.kube
            .pod_events()
            .iter()
            .filter(|e| e.owner.ends_with("-worker") || e.pod.contains("-worker"))
            .count()
    };
    let worker_events = workers(&env);
    let coordinator_events = env.kube.pod_events().len() - worker_events;
    eventually(
        Duration::from_secs(30),
        "the certificate renewed",
        || async {
            let now = secret_text(&env, "tether-tls-analytics", "keystore.pem")?;
            (now != first && now.ends_with(&ca)).then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the coordinator replaced",
        || async {
            (env.kube.pod_events().len() - workers(&env) > coordinator_events).then_some(())
        },
    )
    .await;
    assert_eq!(
        workers(&env),
        worker_events,
        "no worker replaced by a renewal"
    );

    // A customer certificate by reference: named when missing, copied once it exists.
    env.api()
        .ok_put(
            &path,
            &ldap_access(json!({"tls": {"certificate_ref": "k8s:corp-presto-cert"}})),
        )
        .await;
    let (status, message) = eventually(
        Duration::from_secs(20),
        "the missing Secret named",
        || async { condition(&env, "analytics", "CoordinatorCertificate").await },
    )
    .await;
    assert_eq!(status, "False");
    assert!(message.contains("corp-presto-cert"), "{message}");
    let crt = secret_text(&env, "tether-tls-analytics", "tls.crt").expect("crt");
    let key = secret_text(&env, "tether-tls-analytics", "tls.key").expect("key");
    env.kube.create_secret(
        "tether",
        "corp-presto-cert",
        &[("tls.crt", crt.as_str()), ("tls.key", key.as_str())],
    );
    eventually(
        Duration::from_secs(20),
        "the customer's pair copied",
        || async {
            (condition(&env, "analytics", "CoordinatorCertificate")
                .await
                .is_none()
                && secret_text(&env, "tether-tls-analytics", "ca.crt")?.is_empty())
            .then_some(())
        },
    )
    .await;

    // Back to no authentication: the certificate goes, the Service is plain HTTP again.
    let (s, _) = env.api().delete(&path).await;
    assert_eq!(s, 204);
    eventually(Duration::from_secs(20), "HTTPS removed", || async {
        let svc = env.object("v1", "services", "analytics")?;
        (svc["spec"]["ports"][0]["port"] == 8080
            && env
                .object("v1", "secrets", "tether-tls-analytics")
                .is_none()
            && env.object("v1", "services", "analytics-internal").is_none()
            && env
                .object(
                    "networking.k8s.io/v1",
                    "networkpolicies",
                    "analytics-coordinator",
                )
                .is_none())
        .then_some(())
    })
    .await;
    let c = env.running("analytics", 1, 30).await;
    assert!(
        c["status"]["endpoint"]
            .as_str()
            .unwrap_or("")
            .starts_with("http://"),
        "{c}"
    );
}

/// Runs each `[user, password, sql]` of `cases` through presto-python-client over HTTPS
/// to `port`, trusting `ca` and expecting the certificate to name `name` (a client outside
/// the cluster, reaching the coordinator by a port-forward or a load balancer, still checks
/// the Service's name). One JSON result per case: rows, or the error.
const CLIENT: &str = r#"
import json, sys
import prestodb
from requests.adapters import HTTPAdapter
port, ca, name, cases = int(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
class Named(HTTPAdapter):
    def init_poolmanager(self, *a, **kw):
        kw['assert_hostname'] = name
        kw['server_hostname'] = name
        return super().init_poolmanager(*a, **kw)
out = []
for user, password, sql in cases:
    conn = prestodb.dbapi.connect(host='127.0.0.1', port=port, user=user, catalog='lake',
        schema='sales', http_scheme='https', max_attempts=1,
        auth=prestodb.auth.BasicAuthentication(user, password))
    conn._http_session.verify = ca
    conn._http_session.mount('https://', Named())
    cur = conn.cursor()
    try:
        cur.execute(sql)
        rows = cur.fetchall()
        out.append({"rows": len(rows), "id": cur.stats.get("queryId")})
    except prestodb.exceptions.PrestoUserError as e:
        out.append({"error": e.error_name, "message": e.message, "id": e.query_id})
    except Exception as e:
        out.append({"http": str(e)})
print(json.dumps(out))
"#;

async fn client(port: u16, ca: &std::path::Path, cases: &[[&str; 3]]) -> Vec<Value> {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .args([
                "-c",
                CLIENT,
                &port.to_string(),
                &ca.display().to_string(),
                "analytics.tether.svc",
                &serde_json::to_string(cases).expect("cases"),
            ])
            // As the docs tell a user to; requests prefers it to a session's `verify`.
            .env("REQUESTS_CA_BUNDLE", ca)
            .env_remove("CURL_CA_BUNDLE")
            .env("NO_PROXY", "*")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python3 timed out")
    .expect("python3 runs (presto-python-client: scripts/test installs it)");
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presto_checks_passwords_and_rules_from_what_the_agent_applied() {
    use tether_tests::harness::slapd::{Person, Slapd};
    use tether_tests::standins::presto::{PodSource, PrestoOptions, PrestoStandIn};
    init();
    let slapd = Slapd::start(&[
        Person {
            uid: "alice",
            password: "alice-pw",
            groups: &["analysts"],
        },
        Person {
            uid: "bob",
            password: "bob-pw",
            groups: &[],
        },
    ])
    .await;
    let env = PrestoEnv::start().await;
    let path = format!("/compute-planes/{}/presto-access", env.fx.cp_id);
    env.put_catalog("lake", glue_catalog()).await;
    env.put_catalog("orders", tether_tests::harness::presto_env::mysql_catalog())
        .await;
    env.put_cluster("analytics", cluster_spec(1, &["lake", "orders"]))
        .await;
    env.running("analytics", 1, 30).await;
    let access = |orders: bool| {
        let mut catalogs = vec![json!({"user": "alice", "catalog": "lake", "allow": "read-only"})];
        if orders {
            catalogs.push(json!({"user": "alice", "catalog": "orders", "allow": "read-only"}));
        }
        json!({
            "authentication": {"kind": "ldap", "url": slapd.ldaps_url,
                "user_bind_pattern": "uid=${USER},ou=people,dc=example,dc=com",
                "ca_pem": slapd.ca_pem},
            "rules": {"catalogs": catalogs},
            "table_rules": {"lake": [{"user": "alice", "schema": "sales", "privileges": ["SELECT"]}]}
        })
    };
    env.api().ok_put(&path, &access(false)).await;
    eventually(
        Duration::from_secs(30),
        "the coordinator keystore",
        || async { env.object("v1", "secrets", "tether-tls-analytics") },
    )
    .await;
    env.running("analytics", 1, 30).await;
    let before = settled_pods(&env, 2).await;

    // The coordinator pod, as it starts from what the agent applied.
    let presto = PrestoStandIn::start(PrestoOptions {
        pod: Some(PodSource {
            objects: env.kube.objects(),
            namespace: "tether".into(),
            deployment: "analytics-coordinator".into(),
        }),
        ..PrestoOptions::default()
    })
    .await
    .expect("the coordinator starts from its mounted configuration");
    let https = presto.https_addr().expect("HTTPS is on").port();
    // The agent reads it through the internal Service.
    env.kube
        .register_service_backend("tether", "analytics-internal", presto.addr());
    let ca_file = env.dir().join("presto-ca.pem");
    let ca = env
        .object("v1", "configmaps", "tether-presto-ca")
        .expect("CA")["data"]["ca.crt"]
        .as_str()
        .expect("ca.crt")
        .to_owned();
    std::fs::write(&ca_file, &ca).expect("write CA");

    let r = client(
        https,
        &ca_file,
        &[
            ["alice", "alice-pw", "SELECT * FROM lake.sales.orders"],
            ["alice", "alice-pw", "SELECT * FROM orders.crm.customers"],
            [
                "alice",
                "alice-pw",
                "INSERT INTO lake.sales.orders SELECT 1",
            ],
            ["alice", "alice-pw", "SELECT * FROM lake.hr.salaries"],
            ["alice", "wrong", "SELECT * FROM lake.sales.orders"],
            ["bob", "bob-pw", "SELECT * FROM lake.sales.orders"],
        ],
    )
    .await;
    assert_eq!(r[0]["rows"], 3, "{r:?}");
    let denied = |i: usize, message: &str| {
        assert_eq!(r[i]["error"], "PERMISSION_DENIED", "{i}: {:?}", r[i]);
        assert_eq!(r[i]["message"], message, "{i}");
    };
    denied(1, "Access Denied: Cannot access catalog orders");
    denied(
        2,
        "Access Denied: Cannot insert into table lake.sales.orders",
    );
    denied(3, "Access Denied: Cannot select from table hr.salaries");
    assert!(
        r[4]["http"].as_str().unwrap_or("").contains("401"),
        "a wrong password: {:?}",
        r[4]
    );
    denied(5, "Access Denied: Cannot access catalog lake");

    // Plain HTTP believes X-Presto-User, so the principal rule refuses any statement there.
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http")
        .post(format!("http://{}/v1/statement", presto.addr()))
        .header("X-Presto-User", "alice")
        .body("SELECT * FROM lake.sales.orders")
        .send()
        .await
        .expect("post");
    let first: Value = resp.json().await.expect("json");
    let next = first["nextUri"].as_str().expect("nextUri").to_owned();
    let done: Value = reqwest::get(&next)
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        done["error"]["message"], "Access Denied: Principal null cannot become user alice",
        "{done}"
    );

    // A rule change reaches the running coordinator: no pod replaced.
    env.api().ok_put(&path, &access(true)).await;
    let r = eventually(Duration::from_secs(40), "alice may read orders", || async {
        let r = client(
            https,
            &ca_file,
            &[["alice", "alice-pw", "SELECT * FROM orders.crm.customers"]],
        )
        .await;
        (r[0]["rows"] == 3).then_some(r)
    })
    .await;
    assert!(r[0]["id"].is_string());
    assert_eq!(settled_pods(&env, 2).await, before, "no pod replaced");

    // The query log shows who ran what, as authenticated.
    let alice_id = r[0]["id"].as_str().expect("id").to_owned();
    eventually(
        Duration::from_secs(30),
        "alice's query in the log",
        || async {
            let page = env
                .api()
                .ok_get(&format!(
                    "/compute-planes/{}/query-log?limit=1000",
                    env.fx.cp_id
                ))
                .await;
            page["records"]
                .as_array()?
                .iter()
                .find(|q| q["query_id"] == alice_id.as_str())
                .filter(|q| q["user"] == "alice")
                .map(|_| ())
        },
    )
    .await;
    presto.shutdown().await;
}
