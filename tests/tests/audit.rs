//! Issue 5: the audit trail of the REST API — every mutating call with actor, role, tenant,
//! result and client address; tenant isolation of `GET /audit-log`; append-only storage.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tether_tests::harness::{ControlPlaneOptions, ControlPlaneProc, TenantFixture, init};

fn find<'a>(entries: &'a [Value], action: &str, target: &str) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|e| e["action"] == action && e["target"] == target)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_api_call_is_audited_and_tenants_see_only_their_own() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let platform = cp.api();
    let acme = TenantFixture::create(&platform, "acme").await;
    let globex = TenantFixture::create(&platform, "globex").await;
    let admin = platform.as_token(&acme.admin_token);
    let viewer_token = admin
        .ok_post(
            &format!("/tenants/{}/tokens", acme.tenant_id),
            &json!({"role": "viewer"}),
        )
        .await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let viewer = platform.as_token(&viewer_token);

    // ok, rejected (bad input), denied (role), denied (no token), another tenant's object.
    let cluster = format!("/compute-planes/{}/clusters/etl", acme.cp_id);
    let (s, _) = admin
        .put(
            &cluster,
            &json!({"presto_version": "0.293", "workers": {"count": 1}}),
        )
        .await;
    assert!(s.is_success());
    let (s, _) = admin
        .put(
            &cluster,
            &json!({"presto_version": "0.293", "workers": {"count": -1}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = viewer.delete(&cluster).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = platform.as_token("tt_nope").delete(&cluster).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let theirs = format!("/compute-planes/{}/clusters/etl", globex.cp_id);
    let (s, _) = admin
        .put(
            &theirs,
            &json!({"presto_version": "0.293", "workers": {"count": 1}}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Reads are not audited.
    let _ = admin.get(&cluster).await;

    let log = admin.ok_get("/audit-log?limit=1000").await;
    let entries = log["entries"].as_array().cloned().unwrap_or_default();
    let put = "PUT /compute-planes/{cp}/clusters/{name}";
    let puts = find(&entries, put, &cluster);
    assert_eq!(puts.len(), 2, "{log:#}");
    assert_eq!(puts[0]["result"], "rejected", "newest first");
    assert_eq!(puts[0]["status"], 400);
    assert_eq!(puts[1]["result"], "ok");
    for e in &puts {
        assert_eq!(e["role"], "admin");
        assert_eq!(e["tenant_id"], acme.tenant_id.as_str());
        assert_eq!(e["via"], "api");
        assert_eq!(e["client_addr"], "127.0.0.1");
        assert!(e["token_id"].as_str().is_some_and(|t| !t.is_empty()));
    }
    let deletes = find(
        &entries,
        "DELETE /compute-planes/{cp}/clusters/{name}",
        &cluster,
    );
    let results: Vec<(&Value, &Value)> =
        deletes.iter().map(|e| (&e["result"], &e["role"])).collect();
    assert!(
        results.contains(&(&json!("denied"), &json!("viewer"))),
        "{deletes:#?}"
    );
    // An unauthenticated attempt belongs to no tenant: the platform admin sees it.
    let platform_log = platform.ok_get("/audit-log?limit=1000").await;
    let all = platform_log["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let anon = find(
        &all,
        "DELETE /compute-planes/{cp}/clusters/{name}",
        &cluster,
    );
    assert!(
        anon.iter()
            .any(|e| e["token_id"].is_null() && e["result"] == "denied" && e["status"] == 401),
        "{anon:#?}"
    );
    assert!(
        entries
            .iter()
            .all(|e| e["action"].as_str().is_some_and(|a| !a.starts_with("GET"))),
        "reads are not audited"
    );
    // The probe of globex's compute plane is in acme's log (the actor's), not globex's.
    assert_eq!(find(&entries, put, &theirs).len(), 1);
    let globex_log = platform
        .as_token(&globex.admin_token)
        .ok_get("/audit-log?limit=1000")
        .await;
    assert!(
        !globex_log.to_string().contains(&acme.tenant_id),
        "{globex_log:#}"
    );
    assert!(!globex_log.to_string().contains(&theirs));

    // Filters, cursor pagination.
    let denied = admin.ok_get("/audit-log?result=denied").await;
    assert!(
        denied["entries"]
            .as_array()
            .is_some_and(|e| !e.is_empty() && e.iter().all(|e| e["result"] == "denied"))
    );
    let page1 = admin.ok_get("/audit-log?limit=2").await;
    let cursor = page1["next_cursor"].as_i64().expect("more pages");
    let page2 = admin
        .ok_get(&format!("/audit-log?limit=2&cursor={cursor}"))
        .await;
    assert!(page2["entries"][0]["id"].as_i64() < page1["entries"][1]["id"].as_i64());

    // Who may read it: not a viewer; not another tenant's; the platform admin all.
    let (s, _) = viewer.get("/audit-log").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = admin
        .get(&format!("/audit-log?tenant={}", globex.tenant_id))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let all = platform.ok_get("/audit-log?limit=1000").await;
    assert!(
        all.to_string().contains(&globex.tenant_id) && all.to_string().contains(&acme.tenant_id)
    );
    let (s, v) = admin.get("/audit-log?since=yesterday").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_append_only_in_the_store() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let _ = TenantFixture::create(&api, "acme").await;
    let db = cp.data_dir.join("tether.db");
    assert!(db.exists(), "{}", db.display());
    let url = format!("sqlite://{}", db.display());
    let pool = sqlx_pool(&url).await;
    let n: i64 = scalar(&pool, "SELECT count(*) FROM audit_log").await;
    assert!(n > 0);
    for sql in [
        "UPDATE audit_log SET result = 'ok'",
        "DELETE FROM audit_log",
    ] {
        let e = exec(&pool, sql).await.expect_err(sql);
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(scalar(&pool, "SELECT count(*) FROM audit_log").await, n);
}

async fn sqlx_pool(url: &str) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(url)
        .await
        .expect("open the database")
}

async fn scalar(pool: &sqlx::SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .expect("query")
}

async fn exec(pool: &sqlx::SqlitePool, sql: &'static str) -> Result<(), String> {
    sqlx::query(sql)
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
