//! The OpenAPI document at `GET /api/v1/openapi.json` lists exactly the routes the router
//! serves: every documented operation is routed, and nothing undocumented is.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tether_control_plane::state::SessionSettings;
use tether_control_plane::{Config, ControlPlane, api};
use tower::ServiceExt;

/// The routes `api::router` serves under `/api/v1`.
const EXPECTED: &[(&str, &str)] = &[
    ("GET", "/tenants"),
    ("POST", "/tenants"),
    ("POST", "/tenants/{tenant}/tokens"),
    ("GET", "/tenants/{tenant}/usage"),
    ("GET", "/audit-log"),
    ("GET", "/replicas"),
    ("GET", "/tenants/{tenant}/compute-planes"),
    ("POST", "/tenants/{tenant}/compute-planes"),
    ("GET", "/compute-planes/{cp}"),
    ("POST", "/compute-planes/{cp}/enrollment-tokens"),
    ("POST", "/compute-planes/{cp}/revoke-agent"),
    ("GET", "/compute-planes/{cp}/support-requests"),
    ("POST", "/compute-planes/{cp}/support-requests"),
    ("GET", "/compute-planes/{cp}/support-requests/{id}/bundle"),
    ("GET", "/compute-planes/{cp}/cloudformation"),
    ("GET", "/compute-planes/{cp}/clusters"),
    ("GET", "/compute-planes/{cp}/clusters/{name}"),
    ("PUT", "/compute-planes/{cp}/clusters/{name}"),
    ("DELETE", "/compute-planes/{cp}/clusters/{name}"),
    ("PUT", "/compute-planes/{cp}/settings"),
    ("PUT", "/tenants/{tenant}/settings"),
    ("GET", "/tenants/{tenant}/identity-provider"),
    ("PUT", "/tenants/{tenant}/identity-provider"),
    ("DELETE", "/tenants/{tenant}/identity-provider"),
    ("GET", "/tenants/{tenant}/users"),
    ("GET", "/compute-planes/{cp}/query-log"),
    ("GET", "/compute-planes/{cp}/metrics"),
    ("GET", "/compute-planes/{cp}/catalogs"),
    ("GET", "/compute-planes/{cp}/catalogs/{name}"),
    ("PUT", "/compute-planes/{cp}/catalogs/{name}"),
    ("DELETE", "/compute-planes/{cp}/catalogs/{name}"),
    ("GET", "/compute-planes/{cp}/presto-access"),
    ("PUT", "/compute-planes/{cp}/presto-access"),
    ("DELETE", "/compute-planes/{cp}/presto-access"),
    ("GET", "/openapi.json"),
];

/// The methods checked against every documented path.
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH"];

async fn app() -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::open(Config {
        data_dir: dir.path().to_owned(),
        database: None,
        secret_key_file: None,
        fleet: Default::default(),
        identity: Default::default(),
        public_grpc_endpoint: None,
        sts_endpoint: "https://sts.amazonaws.com".into(),
        tls_sans: vec![],
        session: SessionSettings::default(),
        telemetry_retention: Duration::from_secs(3600),
    })
    .await
    .unwrap();
    (api::router(cp.state().clone()), dir)
}

/// Status and body of `method path` without a token.
async fn call(app: &Router, method: &str, path: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body.to_vec())
}

/// `/api/v1` + `path` with every `{param}` filled in.
fn concrete(path: &str) -> String {
    let mut out = String::from("/api/v1");
    for seg in path.split('/').skip(1) {
        out.push('/');
        out.push_str(if seg.starts_with('{') { "x" } else { seg });
    }
    out
}

#[tokio::test]
async fn openapi_document_lists_exactly_the_served_routes() {
    let (app, _dir) = app().await;

    let (status, body) = call(&app, "GET", "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&body).expect("openapi.json is JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["title"], "Tether control plane API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["servers"], serde_json::json!([{"url": "/api/v1"}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        serde_json::json!({"type": "http", "scheme": "bearer", "description": "An API token: `Authorization: Bearer TOKEN`"})
    );

    // The documented operations are exactly the expected ones.
    let mut documented = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_ascii_uppercase();
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            let id = op["operationId"].as_str().unwrap().to_owned();
            assert!(
                operation_ids.insert(id.clone()),
                "duplicate operationId {id}"
            );
            assert!(
                op["tags"].as_array().is_some_and(|t| t.len() == 1),
                "{method} {path}: one tag"
            );
            let secured = op["security"] == serde_json::json!([{"bearer": []}]);
            assert_eq!(
                secured,
                path != "/openapi.json",
                "{method} {path}: security"
            );
            // Every `{param}` of the path is described.
            for seg in path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                assert!(
                    op["parameters"].as_array().is_some_and(|ps| ps
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path")),
                    "{method} {path}: path parameter {name}"
                );
            }
            documented.insert((method, path.clone()));
        }
    }
    // Every JSON body is described by its real schema, not an untyped value — except the
    // document itself and the CloudFormation template (YAML).
    let untyped_ok = [
        ("GET", "/openapi.json", "200"),
        ("GET", "/compute-planes/{cp}/cloudformation", "200"),
    ];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_ascii_uppercase();
            if let Some(body) = op["requestBody"]["content"].as_object() {
                for (ct, media) in body {
                    assert_ne!(
                        media["schema"],
                        serde_json::json!({}),
                        "{method} {path}: request {ct} untyped"
                    );
                }
            }
            for (status, resp) in op["responses"].as_object().unwrap() {
                let Some(content) = resp["content"].as_object() else {
                    assert!(
                        status == "204",
                        "{method} {path} {status}: documents no body"
                    );
                    continue;
                };
                for (ct, media) in content {
                    if untyped_ok.contains(&(method.as_str(), path.as_str(), status.as_str())) {
                        continue;
                    }
                    assert_ne!(
                        media["schema"],
                        serde_json::json!({}),
                        "{method} {path} {status}: {ct} untyped"
                    );
                }
            }
        }
    }

    let expected: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);

    // Every documented operation is routed: without a token, 401 from the API (not the
    // router's empty 404 or a 405); the document itself is public.
    for (method, path) in &documented {
        let (status, body) = call(&app, method, &concrete(path)).await;
        if path == "/openapi.json" {
            assert_eq!(status, StatusCode::OK, "{method} {path}");
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            let err: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(err["error"]["code"], "unauthorized", "{method} {path}");
        }
    }

    // Every other method on a documented path is refused by the router...
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in METHODS {
            if documented.contains(&((*method).to_owned(), path.clone())) {
                continue;
            }
            let (status, _) = call(&app, method, &concrete(path)).await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is served but not documented"
            );
        }
    }
    for (method, path) in [
        ("DELETE", "/api/v1/tenants"),
        ("PUT", "/api/v1/compute-planes/x"),
        ("POST", "/api/v1/audit-log"),
        ("POST", "/api/v1/openapi.json"),
    ] {
        assert_eq!(
            call(&app, method, path).await.0,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
    }

    // ...and undocumented paths are not routed at all (axum's empty 404).
    for path in [
        "/api/v1/nope",
        "/api/v1/compute-planes/x/nope",
        "/api/v1/tenants/x",
        "/api/v1/openapi.yaml",
        "/api/v1",
    ] {
        let (status, body) = call(&app, "GET", path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            body.is_empty(),
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}
