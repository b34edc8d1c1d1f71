//! DesiredStateStore: what the agent reports back — the generation it applied, each
//! cluster's status.

use std::sync::Arc;

use tether_control_plane::store::{PresenceUpdate, SessionStart, Store};
use tether_shared::status::{ClusterStatus, Condition, Phase};

use crate::desired::condition;
use crate::{cluster, cp_now, generation, tenant_with_cp};

/// The applied generation is capped at the stored one and never goes down.
pub async fn applied_generation_is_capped_and_never_lowered(store: Arc<dyn Store>) {
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    for n in ["a", "b", "c"] {
        store
            .put_cluster(&cp.id, n, &cluster(1, &[]), 0)
            .await
            .expect("put")
            .expect("ok");
    }
    store
        .record_applied(&cp.id, 99, &[])
        .await
        .expect("applied 99");
    let now = cp_now(&*store, &cp.id).await;
    assert_eq!(now.applied_generation, 3, "capped at the stored generation");
    assert_eq!(now.generation, 3, "an ack changes no generation");

    store
        .record_applied(&cp.id, 1, &[])
        .await
        .expect("applied 1");
    assert_eq!(
        cp_now(&*store, &cp.id).await.applied_generation,
        3,
        "never lowered"
    );

    // A deletion at generation 4 is not finished by the earlier over-ack of 99.
    assert_eq!(
        store.delete_cluster(&cp.id, "a", 0).await.expect("delete"),
        Some(4)
    );
    store
        .record_applied(&cp.id, 3, &[])
        .await
        .expect("applied 3");
    assert!(
        store.get_cluster(&cp.id, "a").await.expect("get").is_some(),
        "the agent cannot have applied generation 4"
    );
    store
        .record_applied(&cp.id, 4, &[])
        .await
        .expect("applied 4");
    assert_eq!(store.get_cluster(&cp.id, "a").await.expect("get"), None);
    assert_eq!(cp_now(&*store, &cp.id).await.applied_generation, 4);
}

/// The agent's status of a cluster is stored as sent; observed_generation never goes down.
pub async fn cluster_status_round_trips_and_observed_never_goes_down(store: Arc<dyn Store>) {
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    store
        .put_cluster(&cp.id, "etl", &cluster(2, &[]), 0)
        .await
        .expect("put")
        .expect("ok");
    let running = ClusterStatus {
        phase: Phase::Running,
        coordinator_ready: true,
        ready_workers: 2,
        desired_workers: 2,
        endpoint: Some("http://etl-coordinator.tether.svc:8080".into()),
        conditions: vec![
            condition("etl", "Ready", "True"),
            condition("etl", "WorkersReady", "True"),
        ],
        last_error: None,
    };
    store
        .record_cluster_status(&cp.id, "etl", &running, 1)
        .await
        .expect("status");
    let row = store
        .get_cluster(&cp.id, "etl")
        .await
        .expect("get")
        .expect("etl");
    assert_eq!(row.status.as_ref(), Some(&running));
    assert_eq!(row.observed_generation, 1);

    // A later report from an older generation: the status is the latest, the observed
    // generation stays.
    let degraded = ClusterStatus {
        phase: Phase::Degraded,
        ready_workers: 1,
        last_error: Some("worker etl-worker-1: OOMKilled".into()),
        ..running.clone()
    };
    store
        .record_cluster_status(&cp.id, "etl", &degraded, 0)
        .await
        .expect("status");
    let row = store
        .get_cluster(&cp.id, "etl")
        .await
        .expect("get")
        .expect("etl");
    assert_eq!(row.status.as_ref(), Some(&degraded));
    assert_eq!(row.observed_generation, 1, "never goes down");
    assert_eq!(row.generation, 1, "a report is not a change");
    assert_eq!(generation(&*store, &cp.id).await, 1);

    store
        .record_cluster_status(&cp.id, "etl", &ClusterStatus::pending(2), 7)
        .await
        .expect("status");
    let row = store
        .get_cluster(&cp.id, "etl")
        .await
        .expect("get")
        .expect("etl");
    assert_eq!(row.status, Some(ClusterStatus::pending(2)));
    assert_eq!(row.observed_generation, 7);

    // A report about a cluster the store does not have creates none.
    let _ = store
        .record_cluster_status(&cp.id, "ghost", &running, 1)
        .await;
    assert_eq!(store.get_cluster(&cp.id, "ghost").await.expect("get"), None);
    assert_eq!(store.list_clusters(&cp.id).await.expect("list").len(), 1);
}

/// An ack's conditions replace the stored ones when its generation is at or above the
/// applied one, also when it is capped; an older ack (late, or from before a restart of the
/// agent) keeps them, through `record_applied` and through presence alike.
pub async fn older_acks_keep_the_applied_conditions(store: Arc<dyn Store>) {
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    for n in ["a", "b", "c", "d"] {
        store
            .put_cluster(&cp.id, n, &cluster(1, &[]), 0)
            .await
            .expect("put")
            .expect("ok");
    }
    let conds = |tag: &str| -> Vec<Condition> { vec![condition("a", "Ready", tag)] };
    let stored = |store: Arc<dyn Store>| {
        let id = cp.id.clone();
        async move {
            let now = cp_now(&*store, &id).await;
            (now.applied_generation, now.applied_conditions)
        }
    };

    store
        .record_applied(&cp.id, 3, &conds("at-3"))
        .await
        .expect("applied 3");
    assert_eq!(stored(store.clone()).await, (3, conds("at-3")));
    store
        .record_applied(&cp.id, 2, &conds("late-2"))
        .await
        .expect("applied 2");
    assert_eq!(
        stored(store.clone()).await,
        (3, conds("at-3")),
        "an older ack keeps the conditions"
    );
    store
        .record_applied(&cp.id, 3, &conds("again-3"))
        .await
        .expect("applied 3 again");
    assert_eq!(
        stored(store.clone()).await,
        (3, conds("again-3")),
        "an ack at the applied generation replaces them"
    );
    store
        .record_applied(&cp.id, 99, &conds("over-99"))
        .await
        .expect("applied 99");
    assert_eq!(
        stored(store.clone()).await,
        (4, conds("over-99")),
        "an ack above it replaces them, capped at the generation"
    );

    // The same through presence, from the current session.
    let ack = |generation: i64, tag: &str| PresenceUpdate {
        compute_plane_id: cp.id.clone(),
        connected: None,
        heartbeat: None,
        applied: Some(("s1".to_owned(), generation, conds(tag))),
        disconnected: None,
    };
    store
        .claim_session(
            &cp.id,
            &SessionStart {
                session_id: "s1".into(),
                at: 100,
                version: "0.4.1".into(),
                remote_addr: "203.0.113.7:40312".into(),
                replica: "replica-a".into(),
            },
        )
        .await
        .expect("claim");
    store
        .put_cluster(&cp.id, "e", &cluster(1, &[]), 0)
        .await
        .expect("put")
        .expect("ok");
    store
        .record_presence(&[ack(5, "presence-5")])
        .await
        .expect("presence");
    assert_eq!(stored(store.clone()).await, (5, conds("presence-5")));
    store
        .record_presence(&[ack(4, "presence-late-4")])
        .await
        .expect("presence");
    assert_eq!(
        stored(store.clone()).await,
        (5, conds("presence-5")),
        "an older ack through presence keeps the conditions"
    );
    store
        .record_presence(&[ack(5, "presence-again-5")])
        .await
        .expect("presence");
    assert_eq!(
        stored(store.clone()).await,
        (5, conds("presence-again-5")),
        "an ack at the applied generation through presence replaces them"
    );
    // Still older ones, by either path, change nothing.
    store
        .record_presence(&[ack(3, "presence-late-3")])
        .await
        .expect("presence");
    store
        .record_applied(&cp.id, 1, &conds("late-1"))
        .await
        .expect("applied 1");
    assert_eq!(stored(store.clone()).await, (5, conds("presence-again-5")));
}
