//! The real `kube` client: server-side apply, no-op detection, the simulated controller,
//! label selectors, deletes, errors, subresources.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service, ServicePort, ServiceSpec};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{bounded, client, code, config_map, deployment, start};
use crate::harness::eventually;
use crate::standins::kube::ObjectKey;

const NS: &str = "tether";

async fn ready(deps: &Api<Deployment>, name: &str, replicas: i32, generation: i64) -> Deployment {
    eventually(Duration::from_secs(10), "deployment ready", || async {
        let d = deps.get(name).await.ok()?;
        let s = d.status.clone()?;
        // What `kubectl rollout status` waits for: every Pod of the new template, no other.
        (s.ready_replicas.unwrap_or(0) == replicas
            && s.updated_replicas.unwrap_or(0) == replicas
            && s.replicas.unwrap_or(0) == replicas
            && s.observed_generation == Some(generation))
        .then_some(d)
    })
    .await
}

async fn pod_names(pods: &Api<Pod>, selector: &str) -> Vec<String> {
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list pods");
    // Not those on their way out (Terminating).
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_twice_writes_once_and_the_controller_follows() {
    bounded(async {
        let k = start().await;
        let c = client(&k).await;
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), NS);
        let deps: Api<Deployment> = Api::namespaced(c.clone(), NS);
        let pods: Api<Pod> = Api::namespaced(c.clone(), NS);
        let pp = PatchParams::apply("tether").force();
        let cm_key = ObjectKey::new("v1", "configmaps", Some(NS), "catalogs");
        let d_key = ObjectKey::new("apps/v1", "deployments", Some(NS), "worker");

        let cm = config_map("catalogs", &[("lake.properties", "connector.name=hive")]);
        let cm1 = cms
            .patch("catalogs", &pp, &Patch::Apply(&cm))
            .await
            .expect("apply cm");
        let d1 = deps
            .patch(
                "worker",
                &pp,
                &Patch::Apply(&deployment("worker", 2, "presto:0.293")),
            )
            .await
            .expect("apply deployment");
        assert_eq!((k.writes(&cm_key), k.writes(&d_key)), (1, 1));
        assert_eq!(d1.metadata.generation, Some(1));
        assert!(cm1.metadata.uid.is_some() && cm1.metadata.creation_timestamp.is_some());
        ready(&deps, "worker", 2, 1).await;

        // The same state again: nothing written, nothing bumped.
        let (total, d_rv) = (
            k.total_writes(),
            k.object(&d_key).expect("stored")["metadata"]["resourceVersion"].clone(),
        );
        let cm2 = cms
            .patch("catalogs", &pp, &Patch::Apply(&cm))
            .await
            .expect("re-apply cm");
        let d2 = deps
            .patch(
                "worker",
                &pp,
                &Patch::Apply(&deployment("worker", 2, "presto:0.293")),
            )
            .await
            .expect("re-apply deployment");
        assert_eq!(cm2.metadata.resource_version, cm1.metadata.resource_version);
        assert_eq!(d2.metadata.resource_version.as_deref(), d_rv.as_str());
        assert_eq!(k.total_writes(), total);

        // Scaling writes the Deployment only; the controller adds a pod.
        let d3 = deps
            .patch(
                "worker",
                &pp,
                &Patch::Apply(&deployment("worker", 3, "presto:0.293")),
            )
            .await
            .expect("scale");
        assert_eq!((k.writes(&cm_key), k.writes(&d_key)), (1, 2));
        assert_eq!(d3.metadata.generation, Some(2));
        ready(&deps, "worker", 3, 2).await;
        let names = pod_names(&pods, "app=presto,role=worker").await;
        assert_eq!(names.len(), 3);
        let pod = pods.get(&names[0]).await.expect("get pod");
        let hash = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"))
            .cloned()
            .expect("hash label");
        assert_eq!(hash.len(), 10);
        let suffix = names[0]
            .strip_prefix(&format!("worker-{hash}-"))
            .expect("pod name shape");
        assert_eq!(suffix.len(), 5);
        assert_eq!(
            pod.metadata
                .owner_references
                .as_ref()
                .map(|o| o[0].name.as_str()),
            Some("worker")
        );
        let status = pod.status.expect("pod status");
        assert_eq!(
            (status.phase.as_deref(), status.pod_ip.as_deref()),
            (Some("Running"), Some("127.0.0.1"))
        );
        assert!(pod_names(&pods, "role=coordinator").await.is_empty());

        // A new template replaces every pod (rolling, as the Deployment's default strategy).
        deps.patch(
            "worker",
            &pp,
            &Patch::Apply(&deployment("worker", 3, "presto:0.294")),
        )
        .await
        .expect("new image");
        ready(&deps, "worker", 3, 3).await;
        let fresh = pod_names(&pods, "role=worker").await;
        assert_eq!(fresh.len(), 3);
        assert!(fresh.iter().all(|n| !names.contains(n)));
        let deleted: Vec<String> = k
            .pod_events()
            .into_iter()
            .filter(|e| !e.created)
            .map(|e| e.pod)
            .collect();
        assert!(names.iter().all(|n| deleted.contains(n)));

        // Apply removes what the manager applied before and leaves out now.
        let cm3 = cms
            .patch(
                "catalogs",
                &pp,
                &Patch::Apply(&config_map("catalogs", &[("mysql.properties", "x")])),
            )
            .await
            .expect("apply other data");
        assert_eq!(
            cm3.data.map(|d| d.into_keys().collect::<Vec<_>>()),
            Some(vec!["mysql.properties".to_owned()])
        );

        // Deletes: 404 after, counted, and a Deployment's pods go with it.
        cms.delete("catalogs", &DeleteParams::default())
            .await
            .expect("delete cm");
        assert_eq!(code(&cms.get("catalogs").await.expect_err("gone")), 404);
        assert_eq!(k.writes(&cm_key), 3);
        deps.delete("worker", &DeleteParams::default())
            .await
            .expect("delete deployment");
        eventually(Duration::from_secs(5), "pods deleted", || async {
            pod_names(&pods, "role=worker")
                .await
                .is_empty()
                .then_some(())
        })
        .await;
        k.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_kubernetes_statuses() {
    bounded(async {
        let k = start().await;
        let c = client(&k).await;
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), NS);
        let pp = PostParams::default();

        let err = cms
            .create(&pp, &config_map("Bad_Name", &[]))
            .await
            .expect_err("invalid name");
        let kube::Error::Api(s) = &err else {
            panic!("{err:?}")
        };
        assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));

        let created = cms
            .create(&pp, &config_map("a", &[("k", "1")]))
            .await
            .expect("create");
        let err = cms
            .create(&pp, &config_map("a", &[]))
            .await
            .expect_err("exists");
        let kube::Error::Api(s) = &err else {
            panic!("{err:?}")
        };
        assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));

        let mut fresh = created.clone();
        fresh.data = Some(super::labels(&[("k", "2")]));
        let replaced = cms
            .replace("a", &pp, &fresh)
            .await
            .expect("replace with current rv");
        assert_ne!(
            replaced.metadata.resource_version,
            created.metadata.resource_version
        );
        let err = cms.replace("a", &pp, &fresh).await.expect_err("stale rv");
        let kube::Error::Api(s) = &err else {
            panic!("{err:?}")
        };
        assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));

        let err = cms.get("missing").await.expect_err("missing");
        let kube::Error::Api(s) = &err else {
            panic!("{err:?}")
        };
        assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
        assert_eq!(s.details.as_ref().map(|d| d.name.as_str()), Some("missing"));
        let merge = Patch::Merge(json!({"data": {"x": "y"}}));
        assert_eq!(
            code(
                &cms.patch("missing", &PatchParams::default(), &merge)
                    .await
                    .expect_err("patch missing")
            ),
            404
        );

        // A ConfigMap body sent to the Deployments collection.
        let url = format!("{}/apis/apps/v1/namespaces/{NS}/deployments", k.url());
        let resp = reqwest::Client::new()
            .post(url)
            .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}))
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status().as_u16(), 400);
        let body: serde_json::Value = resp.json().await.expect("status body");
        assert_eq!(
            (body["kind"].as_str(), body["reason"].as_str()),
            (Some("Status"), Some("BadRequest"))
        );
        k.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_subresources_and_paging() {
    bounded(async {
        let k = start().await;
        let c = client(&k).await;
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), NS);
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(c.clone(), NS);
        let deps: Api<Deployment> = Api::namespaced(c.clone(), NS);
        let pp = PatchParams::default();

        for name in ["a", "b", "c"] {
            cms.create(&PostParams::default(), &config_map(name, &[("k", "1")]))
                .await
                .expect("create");
        }
        let merged = cms
            .patch(
                "a",
                &pp,
                &Patch::Merge(json!({"data": {"x": "y", "k": null}})),
            )
            .await
            .expect("merge");
        assert_eq!(merged.data, Some(super::labels(&[("x", "y")])));
        let ops: json_patch::Patch =
            serde_json::from_value(json!([{"op": "add", "path": "/data/z", "value": "1"}]))
                .expect("ops");
        let patched = cms
            .patch("a", &pp, &Patch::<()>::Json(ops))
            .await
            .expect("json patch");
        assert_eq!(
            patched
                .data
                .as_ref()
                .and_then(|d| d.get("z"))
                .map(String::as_str),
            Some("1")
        );

        let page = cms
            .list(&ListParams::default().limit(2))
            .await
            .expect("page 1");
        assert_eq!(page.items.len(), 2);
        let token = page.metadata.continue_.clone().expect("continue token");
        let rest = cms
            .list(&ListParams::default().limit(2).continue_token(&token))
            .await
            .expect("page 2");
        assert_eq!((rest.items.len(), rest.metadata.continue_), (1, None));

        let hpa = HorizontalPodAutoscaler {
            metadata: kube::api::ObjectMeta {
                name: Some("worker".into()),
                ..Default::default()
            },
            spec: Some(HorizontalPodAutoscalerSpec {
                max_replicas: 10,
                min_replicas: Some(2),
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: "Deployment".into(),
                    name: "worker".into(),
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = hpas
            .create(&PostParams::default(), &hpa)
            .await
            .expect("create hpa");
        let status = json!({"status": {"currentReplicas": 2, "desiredReplicas": 4}});
        let after = hpas
            .patch_status("worker", &pp, &Patch::Merge(status))
            .await
            .expect("patch status");
        assert_eq!(after.metadata.generation, created.metadata.generation);
        assert_eq!(after.status.as_ref().map(|s| s.desired_replicas), Some(4));
        assert_eq!(
            hpas.get_status("worker")
                .await
                .expect("get status")
                .status
                .map(|s| s.desired_replicas),
            Some(4)
        );

        deps.create(&PostParams::default(), &deployment("worker", 2, "presto"))
            .await
            .expect("create deployment");
        deps.patch_scale(
            "worker",
            &pp,
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("scale");
        let d = deps.get("worker").await.expect("get");
        assert_eq!(
            (d.spec.and_then(|s| s.replicas), d.metadata.generation),
            (Some(4), Some(2))
        );
        k.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_and_service_defaults() {
    bounded(async {
        let k = start().await;
        let c = client(&k).await;
        let nss: Api<Namespace> = Api::all(c.clone());
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(NS.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        nss.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        let names: Vec<String> = nss
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        assert!(
            names.contains(&"default".to_owned()) && names.contains(&NS.to_owned()),
            "{names:?}"
        );

        let svcs: Api<Service> = Api::namespaced(c, NS);
        let svc = Service {
            metadata: kube::api::ObjectMeta {
                name: Some("presto".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 8080,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pp = PatchParams::apply("tether").force();
        let first = svcs
            .patch("presto", &pp, &Patch::Apply(&svc))
            .await
            .expect("apply service");
        let spec = first.spec.clone().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert!(
            spec.cluster_ip
                .as_deref()
                .is_some_and(|ip| ip.starts_with("10.96."))
        );
        let again = svcs
            .patch("presto", &pp, &Patch::Apply(&svc))
            .await
            .expect("re-apply service");
        assert_eq!(
            again.metadata.resource_version, first.metadata.resource_version,
            "defaults are stable"
        );
        let svc_key = ObjectKey::new("v1", "services", Some(NS), "presto");
        assert_eq!(k.writes(&svc_key), 1);

        // dryRun=All answers without storing.
        let cms: Api<ConfigMap> = Api::namespaced(client(&k).await, NS);
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        cms.create(&dry, &config_map("dry", &[]))
            .await
            .expect("dry-run create");
        assert_eq!(code(&cms.get("dry").await.expect_err("not stored")), 404);

        // Deleting a namespace deletes what is in it.
        nss.delete(NS, &DeleteParams::default())
            .await
            .expect("delete namespace");
        assert!(k.object(&svc_key).is_none());
        assert_eq!(k.writes(&svc_key), 2);
        k.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_removes_the_cheapest_pod_first() {
    bounded(async {
        let k = start().await;
        let c = client(&k).await;
        let deps: Api<Deployment> = Api::namespaced(c.clone(), NS);
        let pods: Api<Pod> = Api::namespaced(c, NS);
        let pp = PatchParams::apply("tether").force();
        deps.patch("worker", &pp, &Patch::Apply(&deployment("worker", 3, "presto")))
            .await
            .expect("apply");
        let names = eventually(Duration::from_secs(5), "three pods", || async {
            let n = pod_names(&pods, "role=worker").await;
            (n.len() == 3).then_some(n)
        })
        .await;
        let cost = json!({"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-100"}}});
        pods.patch(&names[1], &PatchParams::default(), &Patch::Merge(cost))
            .await
            .expect("annotate");
        deps.patch("worker", &pp, &Patch::Apply(&deployment("worker", 2, "presto")))
            .await
            .expect("scale down");
        let left = eventually(Duration::from_secs(5), "two pods", || async {
            let n = pod_names(&pods, "role=worker").await;
            (n.len() == 2).then_some(n)
        })
        .await;
        assert!(!left.contains(&names[1]), "{left:?} still has {}", names[1]);
        k.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_keeps_replicas_within_its_bounds() {
    bounded(async {
        let k = start().await;
        let c = client(&k).await;
        let deps: Api<Deployment> = Api::namespaced(c.clone(), NS);
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(c, NS);
        let pp = PatchParams::apply("tether").force();
        let mut d = deployment("worker", 1, "presto");
        if let Some(spec) = d.spec.as_mut() {
            spec.replicas = None;
        }
        deps.patch("worker", &pp, &Patch::Apply(&d))
            .await
            .expect("apply");
        let hpa = HorizontalPodAutoscaler {
            metadata: kube::api::ObjectMeta {
                name: Some("worker".into()),
                ..Default::default()
            },
            spec: Some(HorizontalPodAutoscalerSpec {
                min_replicas: Some(2),
                max_replicas: 5,
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: "Deployment".into(),
                    name: "worker".into(),
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        hpas.patch("worker", &pp, &Patch::Apply(&hpa))
            .await
            .expect("apply hpa");
        let d_key = ObjectKey::new("apps/v1", "deployments", Some(NS), "worker");
        let before = k.writes(&d_key);
        ready(&deps, "worker", 2, 2).await;
        assert_eq!(
            k.writes(&d_key),
            before,
            "the HPA's writes are not a client's"
        );
        eventually(Duration::from_secs(5), "hpa status", || async {
            let s = hpas.get("worker").await.ok()?.status?;
            (s.desired_replicas == 2 && s.current_replicas == Some(2)).then_some(())
        })
        .await;
        // Re-applying without replicas leaves the HPA's number alone.
        deps.patch("worker", &pp, &Patch::Apply(&d))
            .await
            .expect("re-apply");
        assert_eq!(k.writes(&d_key), before);
        k.shutdown().await;
    })
    .await;
}
