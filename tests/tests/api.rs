//! Acceptance 8 and 9: tenant isolation and roles on the REST API, and bad input that gets
//! a 400 naming the field and stores nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tether_tests::harness::{ControlPlaneOptions, ControlPlaneProc, TenantFixture, init};

#[tokio::test]
async fn tenants_cannot_see_each_other_and_roles_are_enforced() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let root = cp.api();
    let a = TenantFixture::create(&root, "acme").await;
    let b = TenantFixture::create(&root, "globex").await;
    let a_admin = root.as_token(&a.admin_token);

    // Another tenant's objects do not exist for A: 404, never 403.
    for path in [
        format!("/compute-planes/{}", b.cp_id),
        format!("/tenants/{}/compute-planes", b.tenant_id),
    ] {
        let (s, body) = a_admin.get(&path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "GET {path}: {body}");
    }
    for (path, body) in [
        (
            format!("/compute-planes/{}/enrollment-tokens", b.cp_id),
            json!({"ttl_seconds": 60}),
        ),
        (
            format!("/compute-planes/{}/revoke-agent", b.cp_id),
            json!({}),
        ),
        (
            format!("/tenants/{}/tokens", b.tenant_id),
            json!({"role": "admin"}),
        ),
        (
            format!("/tenants/{}/compute-planes", b.tenant_id),
            json!({"name": "x", "region": "us-east-1"}),
        ),
    ] {
        let (s, resp) = a_admin.post(&path, &body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "POST {path}: {resp}");
    }
    let (_, tenants) = a_admin.get("/tenants").await;
    let names: Vec<&str> = tenants["tenants"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["acme"]);
    // B's agent state is untouched by A's attempt to revoke it.
    assert_eq!(b.get(&root).await["agent"]["revoked"], false);

    // Roles inside A.
    let mk = |role: &'static str| {
        let a_admin = a_admin.clone();
        let t = a.tenant_id.clone();
        async move {
            let r = a_admin
                .ok_post(&format!("/tenants/{t}/tokens"), &json!({"role": role}))
                .await;
            a_admin.as_token(r["token"].as_str().expect("token"))
        }
    };
    let viewer = mk("viewer").await;
    let operator = mk("operator").await;
    let enroll_path = format!("/compute-planes/{}/enrollment-tokens", a.cp_id);
    for who in [&viewer, &operator] {
        let (s, body) = who.post(&enroll_path, &json!({"ttl_seconds": 60})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("needs admin")),
            "{body}"
        );
        let (s, _) = who
            .post(
                &format!("/compute-planes/{}/revoke-agent", a.cp_id),
                &json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = who
            .post(
                &format!("/tenants/{}/tokens", a.tenant_id),
                &json!({"role": "admin"}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        // But they can read.
        let (s, body) = who.get(&format!("/compute-planes/{}", a.cp_id)).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    // Only the platform admin creates tenants.
    let (s, _) = a_admin.post("/tenants", &json!({"name": "sneaky"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // No token, or a made-up one: 401.
    for bad in ["", "tth_not-a-real-token"] {
        let (s, _) = root.as_token(bad).get("/tenants").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, _) = a_admin
        .post(&enroll_path, &json!({"ttl_seconds": 60}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
}

fn field_of(body: &Value) -> Option<&str> {
    body["error"]["field"].as_str()
}

#[tokio::test]
async fn bad_input_gets_400_naming_the_field_and_stores_nothing() {
    init();
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let root = cp.api();
    let a = TenantFixture::create(&root, "acme").await;
    let admin = root.as_token(&a.admin_token);

    let tenant_cases: &[(&str, Option<&str>)] = &[
        (r#"{"name": "#, Some("name")),
        ("not json", None),
        (r#"{}"#, Some("name")),
        (r#"{"name": 42}"#, Some("name")),
        (r#"{"name": "Acme_Corp"}"#, Some("name")),
        (r#"{"name": "-acme"}"#, Some("name")),
        (r#"{"name": "a.b"}"#, Some("name")),
        (
            &format!(r#"{{"name": "{}"}}"#, "x".repeat(64)),
            Some("name"),
        ),
        (
            r#"{"name": "ok", "aws_account_id": "12345"}"#,
            Some("aws_account_id"),
        ),
        (r#"{"name": "ok", "colour": "blue"}"#, Some("colour")),
    ];
    for (body, field) in tenant_cases {
        let (s, resp) = root.post_raw("/tenants", body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {resp}");
        assert_eq!(field_of(&resp), *field, "{body}: {resp}");
        assert!(
            resp["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let (_, tenants) = root.get("/tenants").await;
    assert_eq!(
        tenants["tenants"].as_array().map(Vec::len),
        Some(1),
        "nothing stored: {tenants}"
    );

    let cps = format!("/tenants/{}/compute-planes", a.tenant_id);
    let cp_cases: &[(&str, &str)] = &[
        (r#"{"region": "us-east-1"}"#, "name"),
        (r#"{"name": "Prod", "region": "us-east-1"}"#, "name"),
        (r#"{"name": "dev"}"#, "region"),
        (r#"{"name": "dev", "region": "US EAST"}"#, "region"),
        (r#"{"name": "dev\n=x", "region": "us-east-1"}"#, "name"),
    ];
    for (body, field) in cp_cases {
        let (s, resp) = admin.post_raw(&cps, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {resp}");
        assert_eq!(field_of(&resp), Some(*field), "{body}: {resp}");
    }
    let (_, list) = admin.get(&cps).await;
    assert_eq!(
        list["compute_planes"].as_array().map(Vec::len),
        Some(1),
        "nothing stored: {list}"
    );

    let tok = format!("/tenants/{}/tokens", a.tenant_id);
    for body in [
        r#"{"role": "root"}"#,
        r#"{"role": "platform_admin"}"#,
        r#"{}"#,
    ] {
        let (s, resp) = admin.post_raw(&tok, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {resp}");
        assert_eq!(field_of(&resp), Some("role"), "{resp}");
    }
    let enr = format!("/compute-planes/{}/enrollment-tokens", a.cp_id);
    for body in [
        r#"{"ttl_seconds": 0}"#,
        r#"{"ttl_seconds": -5}"#,
        r#"{"ttl_seconds": 99999999}"#,
        r#"{"ttl_seconds": "soon"}"#,
        r#"{"ttl_seconds": 60.5}"#,
    ] {
        let (s, resp) = admin.post_raw(&enr, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {resp}");
        assert_eq!(field_of(&resp), Some("ttl_seconds"), "{resp}");
    }
    // A whole number written with a decimal point is still a whole number (JSON Schema's
    // `integer`, which the OpenAPI document promises).
    let (s, resp) = admin.post_raw(&enr, r#"{"ttl_seconds": 60.0}"#).await;
    assert_eq!(s, StatusCode::CREATED, "{resp}");

    // Duplicates are conflicts, and unknown ids are 404.
    let (s, _) = root.post("/tenants", &json!({"name": "acme"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = admin
        .post(&cps, &json!({"name": "prod", "region": "us-east-1"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = root.get("/compute-planes/does-not-exist").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // An oversized body is refused before it is read in full: the client gets 413, or — if
    // it was still sending when the server answered and closed — a reset connection.
    let huge = format!(r#"{{"name": "{}"}}"#, "a".repeat(200_000));
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/tenants", root.base()))
        .bearer_auth(cp.admin_token())
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await;
    if let Ok(r) = resp {
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    let (_, tenants) = root.get("/tenants").await;
    assert_eq!(tenants["tenants"].as_array().map(Vec::len), Some(1));
}
