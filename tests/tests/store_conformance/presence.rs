//! PresenceStore: sessions, heartbeats, acks and session ends, many compute planes per
//! write.

use std::sync::Arc;

use tether_control_plane::store::{PresenceUpdate, SessionStart, Store, Superseded};
use tether_shared::status::Condition;

use crate::{assert_not_found, cluster, compute_plane, cp_now, tenant_with_cp};

fn update(cp: &str) -> PresenceUpdate {
    PresenceUpdate {
        compute_plane_id: cp.to_owned(),
        connected: None,
        heartbeat: None,
        applied: None,
        disconnected: None,
    }
}

fn start(session: &str, at: i64) -> SessionStart {
    SessionStart {
        session_id: session.to_owned(),
        at,
        version: "0.4.1".to_owned(),
        remote_addr: "203.0.113.7:40312".to_owned(),
        replica: "replica-a".to_owned(),
    }
}

/// Connect, heartbeat and end of the current session are recorded; a heartbeat or end of
/// a session that is no longer current changes nothing.
pub async fn sessions_heartbeats_and_stale_sessions(store: Arc<dyn Store>) {
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    let write = |u: PresenceUpdate| {
        let store = store.clone();
        async move { store.record_presence(&[u]).await.expect("record presence") }
    };

    write(PresenceUpdate {
        connected: Some(start("s1", 100)),
        ..update(&cp.id)
    })
    .await;
    let agent = cp_now(&*store, &cp.id).await.agent;
    assert!(agent.connected);
    assert_eq!(agent.session_id.as_deref(), Some("s1"));
    assert_eq!(agent.connected_since, Some(100));
    assert_eq!(agent.version.as_deref(), Some("0.4.1"));
    assert_eq!(agent.remote_addr.as_deref(), Some("203.0.113.7:40312"));
    assert_eq!(agent.replica.as_deref(), Some("replica-a"));

    write(PresenceUpdate {
        heartbeat: Some(("s1".into(), 130)),
        ..update(&cp.id)
    })
    .await;
    assert_eq!(
        cp_now(&*store, &cp.id).await.agent.last_heartbeat,
        Some(130)
    );

    // A session that never was current.
    write(PresenceUpdate {
        heartbeat: Some(("s0".into(), 200)),
        ..update(&cp.id)
    })
    .await;
    write(PresenceUpdate {
        disconnected: Some("s0".into()),
        ..update(&cp.id)
    })
    .await;
    let agent = cp_now(&*store, &cp.id).await.agent;
    assert!(agent.connected, "a stale end changes nothing");
    assert_eq!(
        agent.last_heartbeat,
        Some(130),
        "a stale heartbeat changes nothing"
    );

    // The agent reconnects, through another replica: s2 replaces s1, whose late
    // heartbeat, ack and end are stale now.
    store
        .put_cluster(&cp.id, "etl", &cluster(1, &[]), 0)
        .await
        .expect("put")
        .expect("ok");
    write(PresenceUpdate {
        connected: Some(SessionStart {
            version: "0.4.2".into(),
            remote_addr: "198.51.100.20:5555".into(),
            replica: "replica-b".into(),
            ..start("s2", 300)
        }),
        ..update(&cp.id)
    })
    .await;
    write(PresenceUpdate {
        heartbeat: Some(("s1".into(), 310)),
        applied: Some(("s1".into(), 1, vec![])),
        disconnected: Some("s1".into()),
        ..update(&cp.id)
    })
    .await;
    let now = cp_now(&*store, &cp.id).await;
    let agent = now.agent;
    assert!(agent.connected);
    assert_eq!(agent.session_id.as_deref(), Some("s2"));
    assert_eq!(agent.connected_since, Some(300));
    assert_eq!(agent.version.as_deref(), Some("0.4.2"));
    assert_eq!(agent.remote_addr.as_deref(), Some("198.51.100.20:5555"));
    assert_eq!(agent.replica.as_deref(), Some("replica-b"));
    assert_ne!(agent.last_heartbeat, Some(310));
    assert_eq!(
        now.applied_generation, 0,
        "a superseded session's ack is fenced off"
    );
    // The current session's ack counts.
    write(PresenceUpdate {
        applied: Some(("s2".into(), 1, vec![])),
        ..update(&cp.id)
    })
    .await;
    assert_eq!(cp_now(&*store, &cp.id).await.applied_generation, 1);

    write(PresenceUpdate {
        heartbeat: Some(("s2".into(), 320)),
        ..update(&cp.id)
    })
    .await;
    write(PresenceUpdate {
        disconnected: Some("s2".into()),
        ..update(&cp.id)
    })
    .await;
    let agent = cp_now(&*store, &cp.id).await.agent;
    assert!(!agent.connected);
    assert_eq!(agent.session_id.as_deref(), Some("s2"), "the last session");
    assert_eq!(agent.last_heartbeat, Some(320));
}

/// One update is applied in the order connect, heartbeat, applied, end; one write carries
/// many compute planes; an ack through presence is an ack like `record_applied`.
pub async fn one_update_applies_in_order_and_batches_cover_many(store: Arc<dyn Store>) {
    let (t, a) = tenant_with_cp(&*store, "acme").await;
    let b = compute_plane(&*store, &t.id, "dev").await;
    store
        .put_cluster(&a.id, "etl", &cluster(1, &[]), 0)
        .await
        .expect("put")
        .expect("ok");
    store
        .put_cluster(&a.id, "adhoc", &cluster(1, &[]), 0)
        .await
        .expect("put")
        .expect("ok");
    assert_eq!(
        store.delete_cluster(&a.id, "adhoc", 0).await.expect("del"),
        Some(3)
    );

    let conds = vec![Condition {
        cluster: "etl".into(),
        kind: "Ready".into(),
        status: "True".into(),
        reason: "Reconciled".into(),
        message: String::new(),
        last_transition_unix_ms: 42,
    }];
    store
        .record_presence(&[
            // A whole short session of a: it ends connected = false.
            PresenceUpdate {
                connected: Some(start("a1", 400)),
                heartbeat: Some(("a1".into(), 410)),
                applied: Some(("a1".into(), 3, conds.clone())),
                disconnected: Some("a1".into()),
                ..update(&a.id)
            },
            PresenceUpdate {
                connected: Some(start("b1", 500)),
                heartbeat: Some(("b1".into(), 505)),
                applied: Some(("b1".into(), 7, vec![])),
                ..update(&b.id)
            },
        ])
        .await
        .expect("record presence");

    let a_now = cp_now(&*store, &a.id).await;
    assert!(!a_now.agent.connected, "ended after it started");
    assert_eq!(a_now.agent.session_id.as_deref(), Some("a1"));
    assert_eq!(a_now.agent.last_heartbeat, Some(410));
    assert_eq!(a_now.applied_generation, 3);
    assert_eq!(a_now.applied_conditions, conds);
    assert_eq!(
        store.get_cluster(&a.id, "adhoc").await.expect("get"),
        None,
        "the applied deletion is done"
    );
    let b_now = cp_now(&*store, &b.id).await;
    assert!(b_now.agent.connected);
    assert_eq!(b_now.agent.last_heartbeat, Some(505));
    assert_eq!(b_now.applied_generation, 0, "capped at b's generation 0");

    // An empty write is fine and changes nothing.
    store.record_presence(&[]).await.expect("empty");
    assert_eq!(cp_now(&*store, &b.id).await, b_now);
}

/// After a restart of a single-replica control plane no session is live.
pub async fn mark_all_disconnected_ends_every_session(store: Arc<dyn Store>) {
    let (t, a) = tenant_with_cp(&*store, "acme").await;
    let b = compute_plane(&*store, &t.id, "dev").await;
    let (_t2, c) = tenant_with_cp(&*store, "globex").await;
    let ups: Vec<PresenceUpdate> = [(&a, "sa"), (&b, "sb"), (&c, "sc")]
        .into_iter()
        .map(|(cp, s)| PresenceUpdate {
            connected: Some(start(s, 100)),
            ..update(&cp.id)
        })
        .collect();
    store.record_presence(&ups).await.expect("connect all");
    for cp in [&a, &b, &c] {
        assert!(cp_now(&*store, &cp.id).await.agent.connected);
    }
    store.mark_all_disconnected().await.expect("mark");
    for cp in [&a, &b, &c] {
        let agent = cp_now(&*store, &cp.id).await.agent;
        assert!(!agent.connected, "{} still connected", cp.name);
    }
}

/// A claim records the new session at once and names the live one it superseded, with
/// the replica that held it; a claim of the current session, or after the end of the
/// last one, supersedes nothing.
pub async fn claim_session_names_the_superseded_session(store: Arc<dyn Store>) {
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    let claim = |s: SessionStart| {
        let store = store.clone();
        let cp = cp.id.clone();
        async move { store.claim_session(&cp, &s).await.expect("claim") }
    };
    assert_eq!(claim(start("s1", 100)).await, None, "nothing was connected");
    let agent = cp_now(&*store, &cp.id).await.agent;
    assert!(agent.connected);
    assert_eq!(agent.session_id.as_deref(), Some("s1"));
    assert_eq!(agent.connected_since, Some(100));
    assert_eq!(agent.replica.as_deref(), Some("replica-a"));

    assert_eq!(
        claim(SessionStart {
            replica: "replica-b".into(),
            ..start("s2", 200)
        })
        .await,
        Some(Superseded {
            session_id: "s1".into(),
            replica: Some("replica-a".into()),
        })
    );
    let agent = cp_now(&*store, &cp.id).await.agent;
    assert_eq!(agent.session_id.as_deref(), Some("s2"));
    assert_eq!(agent.replica.as_deref(), Some("replica-b"));
    assert_eq!(agent.connected_since, Some(200));
    // The superseded session's end, written behind, changes nothing now.
    store
        .record_presence(&[PresenceUpdate {
            disconnected: Some("s1".into()),
            ..update(&cp.id)
        }])
        .await
        .expect("presence");
    assert!(cp_now(&*store, &cp.id).await.agent.connected);

    // Claiming the current session again supersedes nothing.
    assert_eq!(
        claim(SessionStart {
            replica: "replica-b".into(),
            ..start("s2", 200)
        })
        .await,
        None
    );
    // After the last session ended there is nothing to supersede.
    store
        .record_presence(&[PresenceUpdate {
            disconnected: Some("s2".into()),
            ..update(&cp.id)
        }])
        .await
        .expect("presence");
    assert!(!cp_now(&*store, &cp.id).await.agent.connected);
    assert_eq!(claim(start("s3", 300)).await, None);
    assert!(cp_now(&*store, &cp.id).await.agent.connected);

    assert_not_found(
        store.claim_session("no-such-cp", &start("s9", 1)).await,
        "a claim on a missing compute plane",
    );
}
