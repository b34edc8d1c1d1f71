//! ReplicaStore: leases of control-plane replicas, the sessions they hold, and health.

use std::sync::Arc;

use tether_control_plane::store::{HeldSession, Replica, SessionStart, Store};

use crate::{cluster, compute_plane, cp_now, tenant_with_cp};

fn lease(name: &str, last_seen_ms: i64, lease_ms: i64, sessions: u64) -> Replica {
    Replica {
        name: name.to_owned(),
        started_ms: 1_000,
        last_seen_ms,
        lease_ms,
        sessions,
        draining: false,
    }
}

fn start(session: &str, replica: &str) -> SessionStart {
    SessionStart {
        session_id: session.to_owned(),
        at: 100,
        version: "0.4.1".to_owned(),
        remote_addr: "203.0.113.7:40312".to_owned(),
        replica: replica.to_owned(),
    }
}

/// Leases are listed while they hold; an expired or removed replica's sessions are marked
/// disconnected, and only those it still holds.
pub async fn replica_leases_expire_and_release_their_sessions(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
    let (t, cp1) = tenant_with_cp(&*store, "acme").await;
    let cp2 = compute_plane(&*store, &t.id, "dev").await;
    let cp3 = compute_plane(&*store, &t.id, "moved").await;

    let a = lease("replica-a", 1_000, 10_000, 1);
    let b = lease("replica-b", 1_000, 2_000, 2);
    assert!(
        store.renew_replica(&b).await.expect("renew b"),
        "a new lease"
    );
    assert!(
        store.renew_replica(&a).await.expect("renew a"),
        "a new lease"
    );
    assert_eq!(
        store.list_replicas(2_500).await.expect("list"),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(
        store.list_replicas(3_000).await.expect("list"),
        vec![a.clone(), b.clone()],
        "a lease holds until last_seen + lease"
    );
    assert_eq!(
        store.list_replicas(3_001).await.expect("list"),
        vec![a.clone()]
    );

    // A renewal moves the lease on and updates what the replica reports.
    let b2 = Replica {
        last_seen_ms: 2_500,
        sessions: 3,
        draining: true,
        ..b.clone()
    };
    assert!(
        !store.renew_replica(&b2).await.expect("renew b again"),
        "a renewal, not a new lease"
    );
    assert_eq!(
        store.list_replicas(4_000).await.expect("list"),
        vec![a.clone(), b2.clone()]
    );

    store
        .claim_session(&cp1.id, &start("s1", "replica-a"))
        .await
        .expect("claim");
    store
        .claim_session(&cp2.id, &start("s2", "replica-b"))
        .await
        .expect("claim");
    // cp3's agent moved from b to a.
    store
        .claim_session(&cp3.id, &start("s3", "replica-b"))
        .await
        .expect("claim");
    store
        .claim_session(&cp3.id, &start("s3b", "replica-a"))
        .await
        .expect("claim");

    assert!(
        store
            .expire_replicas(4_500)
            .await
            .expect("expire")
            .is_empty()
    );
    assert_eq!(
        store.expire_replicas(4_501).await.expect("expire"),
        ["replica-b"],
        "b's lease ran out at 4,500"
    );
    assert!(
        !cp_now(&*store, &cp2.id).await.agent.connected,
        "b's session"
    );
    assert!(
        cp_now(&*store, &cp1.id).await.agent.connected,
        "a's session"
    );
    assert!(
        cp_now(&*store, &cp3.id).await.agent.connected,
        "a session b no longer holds"
    );
    assert_eq!(store.list_replicas(0).await.expect("list"), vec![a.clone()]);
    // b was only cut off from the database: it comes back into a new lease and records
    // again the session it still holds; a session it no longer holds stays as it is.
    assert!(
        store.renew_replica(&b2).await.expect("renew b"),
        "expired: new lease"
    );
    let taken = store
        .reclaim_sessions(
            "replica-b",
            &[
                (cp2.id.clone(), "s2".to_owned()),
                (cp3.id.clone(), "s3".to_owned()),
            ],
        )
        .await
        .expect("reclaim");
    assert_eq!(taken, 1, "only the current session s2");
    let now2 = cp_now(&*store, &cp2.id).await.agent;
    assert!(now2.connected);
    assert_eq!(now2.replica.as_deref(), Some("replica-b"));
    assert_eq!(
        cp_now(&*store, &cp3.id).await.agent.replica.as_deref(),
        Some("replica-a")
    );
    store.remove_replica("replica-b").await.expect("remove b");
    assert!(!cp_now(&*store, &cp2.id).await.agent.connected);
    assert!(
        store
            .expire_replicas(4_501)
            .await
            .expect("expire")
            .is_empty()
    );

    store.remove_replica("replica-a").await.expect("remove a");
    assert!(store.list_replicas(0).await.expect("list").is_empty());
    assert!(!cp_now(&*store, &cp1.id).await.agent.connected);
    assert!(!cp_now(&*store, &cp3.id).await.agent.connected);
    store
        .remove_replica("no-such-replica")
        .await
        .expect("removing an absent replica is fine");
    // A replica that comes back renews into a new lease.
    assert!(store.renew_replica(&a).await.expect("renew a"));
    assert_eq!(store.list_replicas(2_000).await.expect("list"), vec![a]);
}

/// What a replica reads back about the compute planes whose sessions it holds.
pub async fn held_sessions_report_generation_and_holder(store: Arc<dyn Store>) {
    let (t, cp1) = tenant_with_cp(&*store, "acme").await;
    let cp2 = compute_plane(&*store, &t.id, "dev").await;
    store
        .put_cluster(&cp1.id, "etl", &cluster(2, &[]), 0)
        .await
        .expect("put")
        .expect("ok");
    store
        .put_cluster(&cp1.id, "adhoc", &cluster(1, &[]), 0)
        .await
        .expect("put")
        .expect("ok");
    store
        .record_applied(&cp1.id, 1, &[])
        .await
        .expect("applied");
    store
        .claim_session(&cp1.id, &start("s1", "replica-a"))
        .await
        .expect("claim");
    store.revoke_agent(&cp2.id).await.expect("revoke");

    let mut held = store
        .held_sessions(&[cp2.id.clone(), "no-such-cp".into(), cp1.id.clone()])
        .await
        .expect("held sessions");
    held.sort_by(|x, y| x.compute_plane_id.cmp(&y.compute_plane_id));
    let mut expected = vec![
        HeldSession {
            compute_plane_id: cp1.id.clone(),
            generation: 2,
            applied_generation: 1,
            revoked: false,
            session_id: Some("s1".into()),
            replica: Some("replica-a".into()),
        },
        HeldSession {
            compute_plane_id: cp2.id.clone(),
            generation: 0,
            applied_generation: 0,
            revoked: true,
            session_id: None,
            replica: None,
        },
    ];
    expected.sort_by(|x, y| x.compute_plane_id.cmp(&y.compute_plane_id));
    assert_eq!(held, expected);
    assert!(store.held_sessions(&[]).await.expect("none").is_empty());
}
