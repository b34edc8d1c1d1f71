//! The pod `log` subresource, through the real `kube` client.

use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams};

use super::{bounded, client, code, deployment, start};

const NS: &str = "default";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_are_served_followed_and_end_with_the_pod() {
    bounded(async {
        let k = start().await;
        let c = client(&k).await;
        Api::<Deployment>::namespaced(c.clone(), NS)
            .patch(
                "coordinator",
                &PatchParams::apply("tether").force(),
                &Patch::Apply(&deployment("coordinator", 1, "presto")),
            )
            .await
            .expect("deployment");
        let pods: Api<Pod> = Api::namespaced(c.clone(), NS);
        let pod = loop {
            let l = pods
                .list(&ListParams::default().labels("role=coordinator"))
                .await
                .expect("list");
            if let Some(name) = l.items.into_iter().find_map(|p| p.metadata.name) {
                break name;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };

        // What the server printed as it started, with and without timestamps.
        let plain = pods.logs(&pod, &LogParams::default()).await.expect("logs");
        assert!(plain.contains("SERVER STARTED"), "{plain}");
        assert!(
            plain
                .lines()
                .all(|l| !l.starts_with("20") || l.contains('\t')),
            "{plain}"
        );
        let stamped = pods
            .logs(
                &pod,
                &LogParams {
                    timestamps: true,
                    tail_lines: Some(1),
                    ..LogParams::default()
                },
            )
            .await
            .expect("logs");
        let (at, rest) = stamped
            .trim_end()
            .split_once(' ')
            .expect("timestamp prefix");
        assert!(
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
            "{at}"
        );
        assert!(
            rest.ends_with("======== SERVER STARTED ========"),
            "{stamped}"
        );
        assert_eq!(stamped.lines().count(), 1);

        // A wrong container is refused as the API server refuses it.
        let wrong = LogParams {
            container: Some("sidecar".into()),
            ..LogParams::default()
        };
        let e = pods
            .logs(&pod, &wrong)
            .await
            .expect_err("no such container");
        assert_eq!(code(&e), 400);
        let e = pods
            .logs("nope", &LogParams::default())
            .await
            .expect_err("no such pod");
        assert_eq!(code(&e), 404);

        // Following: old lines, then new ones as written, then the end when the pod goes.
        let follow = LogParams {
            follow: true,
            ..LogParams::default()
        };
        let mut lines = pods
            .log_stream(&pod, &follow)
            .await
            .expect("follow")
            .lines();
        for _ in 0..3 {
            lines.next().await.expect("startup line").expect("read");
        }
        k.append_pod_log(
            NS,
            &pod,
            "presto",
            "query 20261126_000001_00000_abcde finished",
        );
        let line = lines.next().await.expect("new line").expect("read");
        assert_eq!(line, "query 20261126_000001_00000_abcde finished");
        pods.delete(&pod, &DeleteParams::default())
            .await
            .expect("delete");
        loop {
            match lines.next().await {
                None => break,
                Some(Ok(l)) => assert!(
                    l.contains("SERVER STARTED") || l.contains("starting"),
                    "{l}"
                ),
                Some(Err(e)) => panic!("{e}"),
            }
        }
        k.shutdown().await;
    })
    .await;
}
