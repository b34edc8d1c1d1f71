//! Watches with kube-runtime's `watcher` and kube's raw `Api::watch`.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::json;

use super::{bounded, client, config_map, start};

const NS: &str = "w";

fn data_of(cm: &ConfigMap) -> Option<String> {
    cm.data.as_ref()?.get("k").cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_applies_and_deletes() {
    bounded(async {
        let k = start().await;
        let cms: Api<ConfigMap> = Api::namespaced(client(&k).await, NS);
        cms.create(&PostParams::default(), &config_map("before", &[("k", "0")]))
            .await
            .expect("create");
        let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
        let mut initial = Vec::new();
        loop {
            match events
                .try_next()
                .await
                .expect("watch")
                .expect("stream open")
            {
                watcher::Event::InitApply(cm) => initial.push(cm.metadata.name),
                watcher::Event::InitDone => break,
                _ => {}
            }
        }
        assert_eq!(initial, vec![Some("before".to_owned())]);

        cms.create(&PostParams::default(), &config_map("x", &[("k", "1")]))
            .await
            .expect("create");
        cms.patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "2"}})),
        )
        .await
        .expect("patch");
        cms.delete("x", &DeleteParams::default())
            .await
            .expect("delete");
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match events
                .try_next()
                .await
                .expect("watch")
                .expect("stream open")
            {
                watcher::Event::Apply(cm) => {
                    seen.push(format!("apply {}", data_of(&cm).unwrap_or_default()))
                }
                watcher::Event::Delete(cm) => {
                    seen.push(format!("delete {}", cm.metadata.name.unwrap_or_default()))
                }
                _ => {}
            }
        }
        assert_eq!(seen, ["apply 1", "apply 2", "delete x"]);
        k.shutdown().await;
    })
    .await;
}

async fn next<S>(s: &mut S) -> WatchEvent<ConfigMap>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    s.try_next().await.expect("event").expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_watch_follows_the_label_selector() {
    bounded(async {
        let k = start().await;
        let cms: Api<ConfigMap> = Api::namespaced(client(&k).await, NS);
        cms.create(&PostParams::default(), &config_map("in", &[("k", "1")])).await.expect("create");
        let mut other = config_map("out", &[]);
        other.metadata.labels = None;
        cms.create(&PostParams::default(), &other).await.expect("create");

        let wp = WatchParams::default().labels("app=presto").timeout(20);
        let mut stream = cms.watch(&wp, "0").await.expect("watch").boxed();
        assert!(matches!(next(&mut stream).await, WatchEvent::Added(cm) if cm.metadata.name.as_deref() == Some("in")));
        // Leaving the selection reads as DELETED, entering it as ADDED.
        cms.patch("in", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": null}}}))).await.expect("unlabel");
        assert!(matches!(next(&mut stream).await, WatchEvent::Deleted(cm) if cm.metadata.name.as_deref() == Some("in")));
        cms.patch("out", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "presto"}}}))).await.expect("label");
        assert!(matches!(next(&mut stream).await, WatchEvent::Added(cm) if cm.metadata.name.as_deref() == Some("out")));
        k.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_end_at_their_timeout_and_at_shutdown() {
    bounded(async {
        let k = start().await;
        let cms: Api<ConfigMap> = Api::namespaced(client(&k).await, NS);
        let created = cms.create(&PostParams::default(), &config_map("a", &[])).await.expect("create");
        let rv = created.metadata.resource_version.expect("rv");

        let wp = WatchParams::default().timeout(1);
        let events: Vec<_> = cms.watch(&wp, &rv).await.expect("watch").collect().await;
        assert!(matches!(events.last(), Some(Ok(WatchEvent::Bookmark(b))) if b.metadata.resource_version == rv));

        let stream = cms.watch(&WatchParams::default().timeout(290), &rv).await.expect("watch");
        let drained = tokio::spawn(async move { stream.collect::<Vec<_>>().await.len() });
        tokio::time::sleep(Duration::from_millis(100)).await;
        k.shutdown().await;
        let n = tokio::time::timeout(Duration::from_secs(5), drained).await.expect("watch ended").expect("join");
        assert_eq!(n, 0);
    })
    .await;
}
