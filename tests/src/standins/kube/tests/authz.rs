//! Permissions: a denied verb is 403 Forbidden with the API server's message, other verbs
//! and resources still work, and a SelfSubjectAccessReview answers from the same rules.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::{bounded, client, config_map, start};

fn review(verb: &str, resource: &str, sub: Option<&str>) -> SelfSubjectAccessReview {
    SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some("a".into()),
                group: Some(String::new()),
                resource: Some(resource.into()),
                subresource: sub.map(str::to_owned),
                verb: Some(verb.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_verbs_are_forbidden_and_reviewed_as_such() {
    bounded(async {
        let k = start().await;
        let c = client(&k).await;
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "a");
        let pp = PatchParams::apply("tether").force();
        cms.patch("c", &pp, &Patch::Apply(&config_map("c", &[])))
            .await
            .expect("allowed");
        k.rbac().deny("", "configmaps", "patch");
        let err = cms
            .patch("c", &pp, &Patch::Apply(&config_map("c", &[])))
            .await
            .expect_err("forbidden");
        let kube::Error::Api(s) = &err else {
            panic!("{err:?}")
        };
        assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            s.message,
            "configmaps \"c\" is forbidden: User \"system:serviceaccount:tether:tether-agent\" \
             cannot patch resource \"configmaps\" in API group \"\" in the namespace \"a\""
        );
        cms.get("c").await.expect("get is still allowed");

        let reviews: Api<SelfSubjectAccessReview> = Api::all(c);
        let pp = PostParams::default();
        let answer = |r: SelfSubjectAccessReview| r.status.is_some_and(|s| s.allowed);
        assert!(!answer(
            reviews
                .create(&pp, &review("patch", "configmaps", None))
                .await
                .expect("review")
        ));
        assert!(answer(
            reviews
                .create(&pp, &review("get", "configmaps", None))
                .await
                .expect("review")
        ));
        k.rbac().deny("", "pods/log", "get");
        assert!(!answer(
            reviews
                .create(&pp, &review("get", "pods", Some("log")))
                .await
                .expect("review")
        ));
        assert!(answer(
            reviews
                .create(&pp, &review("get", "pods", None))
                .await
                .expect("review")
        ));
        k.rbac().allow_all();
        assert!(answer(
            reviews
                .create(&pp, &review("patch", "configmaps", None))
                .await
                .expect("review")
        ));
    })
    .await;
}
