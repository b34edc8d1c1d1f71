//! AuditStore: the audit log and dashboard sessions. (That the log is append-only is a
//! property of the schema, not visible through the trait.)

use std::sync::Arc;

use tether_control_plane::authz::Role;
use tether_control_plane::store::{AuditEntry, AuditFilter, AuditResult, Store};

use crate::{assert_conflict, assert_not_found, tenant};

#[allow(clippy::too_many_arguments)]
fn entry(
    at_ms: i64,
    token: Option<&str>,
    role: Option<&str>,
    tenant: Option<&str>,
    action: &str,
    target: &str,
    status: u16,
    via: &str,
) -> AuditEntry {
    AuditEntry {
        id: 0,
        at_ms,
        token_id: token.map(str::to_owned),
        role: role.map(str::to_owned),
        tenant_id: tenant.map(str::to_owned),
        action: action.to_owned(),
        target: target.to_owned(),
        result: AuditResult::of_status(status),
        status,
        client_addr: format!("10.0.0.{}", at_ms / 1000),
        via: via.to_owned(),
        // Some entries name a person.
        user: (at_ms % 2000 == 0).then(|| format!("user{at_ms}@example.com via oidc")),
    }
}

/// Entries come back newest first, exactly as appended, filtered and in pages.
pub async fn audit_log_is_newest_first_filtered_and_paged(store: Arc<dyn Store>) {
    let put_cluster = "PUT /compute-planes/{cp}/clusters/{name}";
    let entries = [
        entry(
            1_000,
            Some("tok-a"),
            Some("admin"),
            Some("t-a"),
            put_cluster,
            "/compute-planes/cp1/clusters/etl",
            200,
            "api",
        ),
        entry(
            2_000,
            Some("tok-a"),
            Some("admin"),
            Some("t-a"),
            "DELETE /compute-planes/{cp}/clusters/{name}",
            "/compute-planes/cp1/clusters/nope",
            404,
            "api",
        ),
        entry(
            3_000,
            None,
            None,
            None,
            "sign-in",
            "/dashboard/sign-in",
            401,
            "dashboard",
        ),
        entry(
            4_000,
            Some("tok-b"),
            Some("operator"),
            Some("t-b"),
            "PUT /compute-planes/{cp}/catalogs/{name}",
            "/compute-planes/cp2/catalogs/lake",
            200,
            "dashboard",
        ),
        entry(
            5_000,
            Some("tok-p"),
            Some("platform_admin"),
            None,
            "POST /tenants",
            "/tenants",
            500,
            "api",
        ),
    ];
    let mut appended = Vec::new();
    for e in &entries {
        let id = store.append_audit(e).await.expect("append");
        appended.push(AuditEntry { id, ..e.clone() });
    }
    assert!(
        appended.windows(2).all(|w| w[0].id < w[1].id),
        "ids grow in order of appending"
    );
    let as_json = |es: &[AuditEntry]| serde_json::to_value(es).expect("json");
    let log = |f: AuditFilter| {
        let store = store.clone();
        async move { store.audit_log(&f).await.expect("audit log") }
    };
    let all = AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    };
    let (got, next) = log(all.clone()).await;
    let newest_first: Vec<AuditEntry> = appended.iter().rev().cloned().collect();
    assert_eq!(
        as_json(&got),
        as_json(&newest_first),
        "every field, newest first"
    );
    assert_eq!(next, None);

    let at = |es: &[AuditEntry]| es.iter().map(|e| e.at_ms).collect::<Vec<_>>();
    let cases: Vec<(&str, AuditFilter, Vec<i64>)> = vec![
        (
            "tenant",
            AuditFilter {
                tenant_id: Some("t-a".into()),
                ..all.clone()
            },
            vec![2_000, 1_000],
        ),
        (
            "token",
            AuditFilter {
                token_id: Some("tok-b".into()),
                ..all.clone()
            },
            vec![4_000],
        ),
        (
            "action contains",
            AuditFilter {
                action: Some("PUT /".into()),
                ..all.clone()
            },
            vec![4_000, 1_000],
        ),
        (
            "action contains",
            AuditFilter {
                action: Some("/clusters/".into()),
                ..all.clone()
            },
            vec![2_000, 1_000],
        ),
        (
            "action, no wildcards",
            AuditFilter {
                action: Some("%".into()),
                ..all.clone()
            },
            vec![],
        ),
        (
            "action, no wildcards",
            AuditFilter {
                action: Some("sign_in".into()),
                ..all.clone()
            },
            vec![],
        ),
        (
            "result ok",
            AuditFilter {
                result: Some(AuditResult::Ok),
                ..all.clone()
            },
            vec![4_000, 1_000],
        ),
        (
            "result denied",
            AuditFilter {
                result: Some(AuditResult::Denied),
                ..all.clone()
            },
            vec![3_000],
        ),
        (
            "result error",
            AuditFilter {
                result: Some(AuditResult::Error),
                ..all.clone()
            },
            vec![5_000],
        ),
        (
            "since, inclusive",
            AuditFilter {
                since_ms: Some(3_000),
                ..all.clone()
            },
            vec![5_000, 4_000, 3_000],
        ),
        (
            "until, exclusive",
            AuditFilter {
                until_ms: Some(3_000),
                ..all.clone()
            },
            vec![2_000, 1_000],
        ),
        (
            "combined",
            AuditFilter {
                tenant_id: Some("t-a".into()),
                result: Some(AuditResult::Rejected),
                ..all.clone()
            },
            vec![2_000],
        ),
    ];
    for (what, f, expected) in cases {
        assert_eq!(at(&log(f).await.0), expected, "{what}");
    }

    // Pages of two: the cursor is exclusive, none after the last page.
    let page = |cursor: Option<i64>| {
        log(AuditFilter {
            limit: 2,
            cursor,
            ..AuditFilter::default()
        })
    };
    let (p1, c1) = page(None).await;
    assert_eq!(at(&p1), [5_000, 4_000]);
    let (p2, c2) = page(Some(c1.expect("more"))).await;
    assert_eq!(at(&p2), [3_000, 2_000]);
    let (p3, c3) = page(Some(c2.expect("more"))).await;
    assert_eq!(at(&p3), [1_000]);
    assert_eq!(c3, None);
    let (p, _) = page(Some(appended[2].id)).await;
    assert_eq!(at(&p), [2_000, 1_000], "entries below the cursor's id");
}

/// A session lives until its expiry, is found by the hash of its id, and ends on delete;
/// creating one sweeps out the expired.
pub async fn dashboard_sessions_live_until_expiry(store: Arc<dyn Store>) {
    let t = tenant(&*store, "acme").await;
    let token = store
        .create_api_token(Some(&t.id), Role::Operator, "hash-op", 0)
        .await
        .expect("token");
    store
        .create_dashboard_session("sess-1", &token.id, "csrf-1", 1_000, 5_000)
        .await
        .expect("create");
    let s = store
        .dashboard_session("sess-1", 2_000)
        .await
        .expect("read")
        .expect("live");
    assert_eq!(s.token, token);
    assert_eq!(s.csrf, "csrf-1");
    assert_eq!(s.expires_ms, 5_000);
    assert!(
        store
            .dashboard_session("sess-1", 4_999)
            .await
            .expect("read")
            .is_some()
    );
    assert!(
        store
            .dashboard_session("sess-1", 5_000)
            .await
            .expect("read")
            .is_none(),
        "expired at its expiry"
    );
    assert!(
        store
            .dashboard_session("no-such", 2_000)
            .await
            .expect("read")
            .is_none()
    );

    // A new session at 6,000 deletes the expired one: even an earlier clock cannot find it.
    store
        .create_dashboard_session("sess-2", &token.id, "csrf-2", 6_000, 9_000)
        .await
        .expect("create");
    assert!(
        store
            .dashboard_session("sess-1", 2_000)
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(
        store
            .dashboard_session("sess-2", 6_500)
            .await
            .expect("read")
            .map(|s| s.csrf),
        Some("csrf-2".to_owned())
    );

    store
        .delete_dashboard_session("sess-2")
        .await
        .expect("delete");
    assert!(
        store
            .dashboard_session("sess-2", 6_500)
            .await
            .expect("read")
            .is_none()
    );
    store
        .delete_dashboard_session("no-such")
        .await
        .expect("deleting an absent session is fine");
}

/// A session of a token that does not exist is not stored; an id hash is one session, so
/// a second live session with it is a conflict and the first stays as it was.
pub async fn dashboard_sessions_need_their_token_and_a_unique_id(store: Arc<dyn Store>) {
    let t = tenant(&*store, "acme").await;
    let token = store
        .create_api_token(Some(&t.id), Role::Viewer, "hash-viewer", 0)
        .await
        .expect("token");
    let other = store
        .create_api_token(Some(&t.id), Role::Admin, "hash-admin", 0)
        .await
        .expect("token");

    assert_not_found(
        store
            .create_dashboard_session("sess-orphan", "no-such-token", "csrf-0", 1_000, 5_000)
            .await,
        "a session of a missing token",
    );
    assert!(
        store
            .dashboard_session("sess-orphan", 2_000)
            .await
            .expect("read")
            .is_none(),
        "nothing was stored"
    );

    store
        .create_dashboard_session("sess-1", &token.id, "csrf-1", 1_000, 5_000)
        .await
        .expect("create");
    assert_conflict(
        store
            .create_dashboard_session("sess-1", &other.id, "csrf-2", 2_000, 9_000)
            .await,
        "a second live session with the same id hash",
    );
    let s = store
        .dashboard_session("sess-1", 3_000)
        .await
        .expect("read")
        .expect("live");
    assert_eq!(s.token, token, "the first session's token");
    assert_eq!(s.csrf, "csrf-1");
    assert_eq!(s.expires_ms, 5_000);
}
