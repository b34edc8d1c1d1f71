//! The real `kubectl` against the stand-in, each run with its own `HOME` (its discovery
//! cache) and no kubeconfig, as `kubectl --server URL`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServicePort, ServiceSpec};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::Value;

use super::{bounded, client, config_map, deployment, start};
use crate::standins::kube::ObjectKey;

const NS: &str = "tether";

/// Runs `kubectl --server url ARGS`; returns stdout, panicking with stderr on failure.
async fn kubectl(url: &str, args: &[&str]) -> String {
    let home = tempfile::tempdir().expect("temp HOME");
    let run = tokio::process::Command::new("kubectl")
        .arg("--server")
        .arg(url)
        .args(args)
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("kubectl timed out")
        .expect("kubectl is on PATH");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_deletes_and_patches() {
    bounded(async {
        let k = start().await;
        let c = client(&k).await;
        let pp = PatchParams::apply("tether").force();
        Api::<Deployment>::namespaced(c.clone(), NS)
            .patch(
                "worker",
                &pp,
                &Patch::Apply(&deployment("worker", 2, "presto")),
            )
            .await
            .expect("deployment");
        Api::<ConfigMap>::namespaced(c.clone(), NS)
            .patch(
                "catalogs",
                &pp,
                &Patch::Apply(&config_map(
                    "catalogs",
                    &[("lake.properties", "connector.name=hive")],
                )),
            )
            .await
            .expect("configmap");
        let svc = Service {
            metadata: ObjectMeta {
                name: Some("presto".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    port: 8080,
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        Api::<Service>::namespaced(c, NS)
            .create(&PostParams::default(), &svc)
            .await
            .expect("service");
        let url = k.url();

        let list: Value =
            serde_json::from_str(&kubectl(&url, &["get", "deployments", "-A", "-o", "json"]).await)
                .expect("json");
        assert_eq!(list["items"][0]["metadata"]["name"], "worker");
        assert_eq!(list["items"][0]["metadata"]["namespace"], NS);
        let table = kubectl(&url, &["get", "deployments", "-A"]).await;
        assert!(
            table.contains("worker") && table.contains("UP-TO-DATE"),
            "a server-printed Table: {table}"
        );
        let pods = kubectl(&url, &["get", "pods", "-n", NS]).await;
        assert_eq!(
            pods.lines().filter(|l| l.starts_with("worker-")).count(),
            2,
            "{pods}"
        );

        let yaml = kubectl(
            &url,
            &["get", "configmap", "catalogs", "-n", NS, "-o", "yaml"],
        )
        .await;
        assert!(
            yaml.contains("name: catalogs")
                && yaml.contains("lake.properties: connector.name=hive"),
            "{yaml}"
        );

        let out = kubectl(&url, &["delete", "service", "presto", "-n", NS]).await;
        assert!(out.contains("service \"presto\" deleted"), "{out}");
        assert!(
            k.object(&ObjectKey::new("v1", "services", Some(NS), "presto"))
                .is_none()
        );

        let cm = ObjectKey::new("v1", "configmaps", Some(NS), "catalogs");
        let before = k.writes(&cm);
        let out = kubectl(
            &url,
            &[
                "patch",
                "configmap",
                "catalogs",
                "-n",
                NS,
                "--type",
                "merge",
                "-p",
                r#"{"data":{"x":"y"}}"#,
            ],
        )
        .await;
        assert!(out.contains("configmap/catalogs patched"), "{out}");
        assert_eq!(k.object(&cm).expect("cm")["data"]["x"], "y");
        assert_eq!(k.writes(&cm), before + 1);
        k.shutdown().await;
    })
    .await;
}
