//! The pod proxy's Presto drain endpoint and the service proxy.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{Method, Uri};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::Value;

use super::{bounded, client, deployment, start};
use crate::harness::eventually;

const NS: &str = "tether";

/// A backend that echoes method, path, query and body.
async fn echo_backend() -> SocketAddr {
    let app = Router::new().fallback(|m: Method, u: Uri, body: Bytes| async move {
        format!("{m} {u} {}", String::from_utf8_lossy(&body))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_proxy_drains_like_a_presto_worker() {
    bounded(async {
        let k = start().await;
        let c = client(&k).await;
        Api::<Deployment>::namespaced(c.clone(), NS)
            .patch(
                "worker",
                &PatchParams::apply("tether").force(),
                &Patch::Apply(&deployment("worker", 2, "presto")),
            )
            .await
            .expect("deployment");
        let pods: Api<Pod> = Api::namespaced(c.clone(), NS);
        let names: Vec<String> = eventually(Duration::from_secs(5), "two pods", || async {
            let l = pods
                .list(&ListParams::default().labels("role=worker"))
                .await
                .ok()?;
            let names: Vec<String> = l
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect();
            (names.len() == 2).then_some(names)
        })
        .await;
        let state = |pod: &str| format!("/api/v1/namespaces/{NS}/pods/{pod}/proxy/v1/info/state");
        let get = |pod: &str| {
            http::Request::get(state(pod))
                .body(Vec::new())
                .expect("request")
        };

        // Faults never touch the proxies.
        k.faults().fail_next(1, 503);
        let put = http::Request::put(state(&names[0]))
            .header("content-type", "application/json")
            .body(b"\"SHUTTING_DOWN\"".to_vec())
            .expect("request");
        c.request_text(put).await.expect("drain");
        assert_eq!(k.faults().injected(), 0);
        k.faults().clear();

        let drains = k.drains();
        assert_eq!(drains.len(), 1);
        assert_eq!(
            (
                drains[0].namespace.as_str(),
                drains[0].pod.as_str(),
                drains[0].body.as_str()
            ),
            (NS, names[0].as_str(), "\"SHUTTING_DOWN\"")
        );
        assert_eq!(
            c.request_text(get(&names[0])).await.expect("state"),
            "\"SHUTTING_DOWN\""
        );
        assert_eq!(
            c.request_text(get(&names[1])).await.expect("state"),
            "\"ACTIVE\""
        );
        let err = c.request_text(get("nope")).await.expect_err("no such pod");
        assert_eq!(super::code(&err), 404);
        k.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_proxy_forwards_to_the_registered_backend() {
    bounded(async {
        let k = start().await;
        let http = reqwest::Client::new();
        let base = format!("{}/api/v1/namespaces/{NS}/services", k.url());

        let resp = http
            .get(format!("{base}/presto:8080/proxy/v1/info"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status().as_u16(), 404, "no such service");
        let svc = Service {
            metadata: ObjectMeta {
                name: Some("presto".into()),
                ..ObjectMeta::default()
            },
            spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
                ports: Some(vec![k8s_openapi::api::core::v1::ServicePort {
                    name: Some("http".into()),
                    port: 8080,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Service::default()
        };
        Api::<Service>::namespaced(client(&k).await, NS)
            .create(&PostParams::default(), &svc)
            .await
            .expect("service");
        let resp = http
            .get(format!("{base}/presto:8080/proxy/v1/info"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status().as_u16(), 503);
        let s: Value = resp.json().await.expect("status");
        assert_eq!(
            s["message"],
            "no endpoints available for service \"presto\""
        );

        k.register_service_backend(NS, "presto", echo_backend().await);
        let resp = http
            .post(format!(
                "{base}/presto:8080/proxy/v1/statement?catalog=lake"
            ))
            .body("SELECT 1")
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.text().await.expect("body"),
            "POST /v1/statement?catalog=lake SELECT 1"
        );
        let resp = http
            .get(format!("{base}/https:presto:8080/proxy/"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.text().await.expect("body"), "GET / ");
        // A port the Service does not define, as the API server answers it.
        let resp = http
            .get(format!("{base}/presto:8443/proxy/v1/info"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status().as_u16(), 503);
        let s: Value = resp.json().await.expect("status");
        assert_eq!(
            s["message"],
            "no service port \"8443\" found for service \"presto\""
        );
        let resp = http
            .get(format!("{base}/presto:http/proxy/"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status().as_u16(), 200, "by the port's name");
        k.shutdown().await;
    })
    .await;
}
