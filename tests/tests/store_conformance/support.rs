//! SupportStore: support requests per compute plane, a bundle kept once, never after the
//! request expired, never for another compute plane.

use std::sync::Arc;

use tether_control_plane::store::{Store, SupportRequestRow};

use crate::{assert_conflict, assert_not_found, tenant_with_cp};

fn request(id: &str, cp: &str, at: i64, expires: i64) -> SupportRequestRow {
    SupportRequestRow {
        id: id.to_owned(),
        compute_plane_id: cp.to_owned(),
        reason: "workers restart".to_owned(),
        requested_by: "token t1".to_owned(),
        requested_at_ms: at,
        expires_at_ms: expires,
        received_at_ms: None,
        bundle_bytes: None,
    }
}

pub async fn support_bundles_are_kept_once_and_only_in_time(store: Arc<dyn Store>) {
    let (_, cp) = tenant_with_cp(&*store, "acme").await;
    let (_, other) = tenant_with_cp(&*store, "other").await;
    store
        .create_support_request(&request("sr-1", &cp.id, 1_000, 10_000))
        .await
        .expect("create");
    store
        .create_support_request(&request("sr-2", &cp.id, 2_000, 3_000))
        .await
        .expect("create");
    assert_conflict(
        store
            .create_support_request(&request("sr-1", &cp.id, 1_000, 10_000))
            .await,
        "the same id twice",
    );
    let listed = store.support_requests(&cp.id).await.expect("list");
    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["sr-2", "sr-1"], "newest first");
    assert!(
        store
            .support_requests(&other.id)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        store.support_bundle(&cp.id, "sr-1").await.expect("bundle"),
        None
    );

    assert_not_found(
        store
            .record_support_bundle(&other.id, "sr-1", "{}", 5_000)
            .await,
        "another compute plane's request",
    );
    assert_not_found(
        store.support_bundle(&other.id, "sr-1").await,
        "another's bundle",
    );
    assert_conflict(
        store
            .record_support_bundle(&cp.id, "sr-2", "{}", 5_000)
            .await,
        "an expired request",
    );
    store
        .record_support_bundle(&cp.id, "sr-1", r#"{"files":[]}"#, 5_000)
        .await
        .expect("in time");
    assert_conflict(
        store
            .record_support_bundle(&cp.id, "sr-1", "{}", 6_000)
            .await,
        "a second bundle",
    );
    assert_eq!(
        store
            .support_bundle(&cp.id, "sr-1")
            .await
            .expect("bundle")
            .as_deref(),
        Some(r#"{"files":[]}"#)
    );
    let r = store
        .support_requests(&cp.id)
        .await
        .expect("list")
        .into_iter()
        .find(|r| r.id == "sr-1")
        .expect("sr-1");
    assert_eq!((r.received_at_ms, r.bundle_bytes), (Some(5_000), Some(12)));
}
