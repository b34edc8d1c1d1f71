//! End-to-end tests of the stand-in: the real `kube` client, the real `kubectl`, raw HTTP for
//! the proxies and faults. Every test is bounded by [`bounded`].

mod authz;
mod client;
mod faults;
mod kubectl;
mod logs;
mod proxy;
mod watch;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::{KubeOptions, KubeStandIn};

/// Runs a test body, failing it after 60 s.
async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test timed out")
}

/// A stand-in on a free loopback port with a short ready delay.
async fn start() -> KubeStandIn {
    KubeStandIn::start(KubeOptions {
        ready_delay: Duration::from_millis(200),
        ..KubeOptions::default()
    })
    .await
    .expect("start stand-in")
}

/// A `kube::Client` built from the stand-in's kubeconfig, as the agent builds one.
async fn client(k: &KubeStandIn) -> kube::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kc = Kubeconfig::from_yaml(&k.kubeconfig_yaml()).expect("kubeconfig parses");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

/// The HTTP code of a failed kube call.
fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other:?}"),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A ConfigMap `name` with `data`.
fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(&[("app", "presto")])),
            ..ObjectMeta::default()
        },
        data: Some(labels(data)),
        ..ConfigMap::default()
    }
}

/// A Deployment `name` of `replicas` pods labelled `app=presto, role=<name>`.
fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    let l = labels(&[("app", "presto"), ("role", name)]);
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(l.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(l.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(l),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "presto".into(),
                        image: Some(image.into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}
