//! Fault injection, seen by raw HTTP and by the kube client (which retries 503 by itself).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::Value;

use super::{bounded, client, code, config_map, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_conflicts_and_latency() {
    bounded(async {
        let k = start().await;
        let faults = k.faults();
        let http = reqwest::Client::new();
        let url = format!("{}/api/v1/namespaces/f/configmaps", k.url());

        faults.fail_next(2, 503);
        for _ in 0..2 {
            let resp = http.get(&url).send().await.expect("get");
            assert_eq!(resp.status().as_u16(), 503);
            let s: Value = resp.json().await.expect("status");
            assert_eq!(
                (s["kind"].as_str(), s["reason"].as_str(), s["code"].as_u64()),
                (Some("Status"), Some("ServiceUnavailable"), Some(503))
            );
        }
        assert_eq!(
            http.get(&url).send().await.expect("get").status().as_u16(),
            200
        );
        assert_eq!(faults.injected(), 2);

        // kube-client 5 retries 429/503/504 by itself: two 503s are invisible to its callers.
        let cms: Api<ConfigMap> = Api::namespaced(client(&k).await, "f");
        faults.fail_next(2, 503);
        cms.list(&Default::default())
            .await
            .expect("retried through the 503s");
        assert_eq!(faults.injected(), 4);
        faults.fail_next(1, 500);
        assert_eq!(
            code(&cms.list(&Default::default()).await.expect_err("500")),
            500
        );

        // Conflicts hit writes only.
        let pp = PatchParams::apply("tether").force();
        faults.conflict_next_writes(1);
        cms.list(&Default::default()).await.expect("reads pass");
        let err = cms
            .patch("c", &pp, &Patch::Apply(&config_map("c", &[])))
            .await
            .expect_err("conflict");
        let kube::Error::Api(s) = &err else {
            panic!("{err:?}")
        };
        assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
        cms.patch("c", &pp, &Patch::Apply(&config_map("c", &[])))
            .await
            .expect("next write passes");
        assert_eq!(faults.injected(), 6);

        faults.set_latency(Duration::from_millis(300));
        let t = Instant::now();
        cms.get("c").await.expect("slow get");
        assert!(t.elapsed() >= Duration::from_millis(300));
        faults.clear();
        let t = Instant::now();
        cms.get("c").await.expect("fast get");
        assert!(t.elapsed() < Duration::from_millis(300));
        k.shutdown().await;
    })
    .await;
}
