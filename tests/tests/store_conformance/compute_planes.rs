//! ComputePlaneStore: compute planes, enrollment tokens, certificates and revocation.

use std::sync::Arc;

use tether_control_plane::store::{AgentState, NewCertificate, RedeemError, Store};

use crate::{assert_conflict, assert_not_found, compute_plane, cp_now, tenant, tenant_with_cp};

fn cert(serial: &str, expires_at: i64) -> NewCertificate {
    NewCertificate {
        serial: serial.to_owned(),
        issued_at: expires_at - 86_400,
        expires_at,
    }
}

/// A compute plane keeps what it was created with; names are unique within a tenant only;
/// a missing tenant is not found.
pub async fn compute_planes_belong_to_one_tenant(store: Arc<dyn Store>) {
    let acme = tenant(&*store, "acme").await;
    let globex = tenant(&*store, "globex").await;
    let prod = store
        .create_compute_plane(&acme.id, "prod", "eu-west-1", 1_700_000_000)
        .await
        .expect("prod");
    assert!(!prod.id.is_empty());
    assert_eq!(prod.tenant_id, acme.id);
    assert_eq!(prod.name, "prod");
    assert_eq!(prod.region, "eu-west-1");
    assert_eq!(prod.created_at, 1_700_000_000);
    assert_eq!(prod.agent, AgentState::default(), "no agent yet");
    assert_eq!(prod.generation, 0);
    assert_eq!(prod.applied_generation, 0);
    assert!(prod.applied_conditions.is_empty());
    assert_eq!(prod.telemetry_dropped, 0);
    assert_eq!(
        store.get_compute_plane(&prod.id).await.expect("get"),
        Some(prod.clone())
    );

    let dev = store
        .create_compute_plane(&acme.id, "dev", "us-west-2", 1_700_000_100)
        .await
        .expect("dev");
    assert_conflict(
        store
            .create_compute_plane(&acme.id, "prod", "us-east-1", 5)
            .await,
        "a second compute plane prod in acme",
    );
    // The same name in another tenant is another compute plane.
    let globex_prod = store
        .create_compute_plane(&globex.id, "prod", "us-east-1", 7)
        .await
        .expect("prod in globex");
    assert_ne!(globex_prod.id, prod.id);

    assert_eq!(
        store.list_compute_planes(&acme.id).await.expect("list"),
        vec![dev, prod.clone()],
        "acme's compute planes, by name"
    );
    assert_eq!(
        store.list_compute_planes(&globex.id).await.expect("list"),
        vec![globex_prod]
    );
    assert!(
        store
            .list_compute_planes("no-such-tenant")
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        store.get_compute_plane("no-such-cp").await.expect("get"),
        None
    );

    assert_not_found(
        store
            .create_compute_plane("no-such-tenant", "prod", "us-east-1", 0)
            .await,
        "a compute plane of a missing tenant",
    );
    // The failed attempt left the existing one as it was.
    assert_eq!(cp_now(&*store, &prod.id).await, prod);
}

/// Peek shows the compute plane without using the token; redeem uses it once, records
/// the certificate and clears the revoked flag; unknown, used and expired tokens say so.
pub async fn enrollment_tokens_peek_and_redeem(store: Arc<dyn Store>) {
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    let id = store
        .create_enrollment_token(&cp.id, "tok-hash", 1_000, 100)
        .await
        .expect("token");
    assert!(!id.is_empty());
    store
        .create_enrollment_token(&cp.id, "short-hash", 200, 100)
        .await
        .expect("short-lived token");

    for _ in 0..2 {
        let peeked = store
            .peek_enrollment_token("tok-hash", 500)
            .await
            .expect("peek")
            .expect("a live token");
        assert_eq!(peeked.id, cp.id, "peek does not use the token up");
        assert_eq!(peeked.tenant_id, cp.tenant_id);
    }
    let peek = |hash: &'static str, now: i64| {
        let store = store.clone();
        async move {
            store
                .peek_enrollment_token(hash, now)
                .await
                .expect("peek")
                .map(|cp| cp.id)
        }
    };
    assert_eq!(peek("no-such-hash", 500).await, Err(RedeemError::Unknown));
    assert_eq!(
        peek("tok-hash", 999).await,
        Ok(cp.id.clone()),
        "before expiry"
    );
    assert_eq!(
        peek("tok-hash", 1_000).await,
        Err(RedeemError::Expired),
        "at expiry"
    );
    assert_eq!(peek("short-hash", 300).await, Err(RedeemError::Expired));

    let redeem = |hash: &'static str, serial: &'static str, now: i64| {
        let store = store.clone();
        async move {
            store
                .redeem_enrollment_token(hash, &cert(serial, 90_000), now)
                .await
                .expect("redeem")
        }
    };
    assert_eq!(
        redeem("no-such-hash", "s0", 500).await,
        Err(RedeemError::Unknown)
    );
    assert_eq!(
        redeem("short-hash", "s0", 300).await,
        Err(RedeemError::Expired)
    );
    assert_eq!(
        redeem("tok-hash", "s0", 1_000).await,
        Err(RedeemError::Expired)
    );
    // Refused redemptions record nothing.
    assert_eq!(cp_now(&*store, &cp.id).await.agent.certificate_serial, None);
    assert!(
        !store
            .certificate_allowed(&cp.id, "s0")
            .await
            .expect("allowed")
    );

    // A revoked agent enrolls again with a new token: the flag is cleared.
    store.revoke_agent(&cp.id).await.expect("revoke");
    assert!(cp_now(&*store, &cp.id).await.agent.revoked);
    assert_eq!(redeem("tok-hash", "s1", 500).await, Ok(()));
    let after = cp_now(&*store, &cp.id).await;
    assert!(!after.agent.revoked, "redeem clears revoked");
    assert_eq!(after.agent.certificate_serial.as_deref(), Some("s1"));
    assert_eq!(after.agent.certificate_expires_at, Some(90_000));
    assert!(
        store
            .certificate_allowed(&cp.id, "s1")
            .await
            .expect("allowed")
    );

    assert_eq!(redeem("tok-hash", "s2", 600).await, Err(RedeemError::Used));
    assert_eq!(peek("tok-hash", 600).await, Err(RedeemError::Used));
    assert!(
        !store
            .certificate_allowed(&cp.id, "s2")
            .await
            .expect("allowed"),
        "a used token records no certificate"
    );
    assert_eq!(
        cp_now(&*store, &cp.id)
            .await
            .agent
            .certificate_serial
            .as_deref(),
        Some("s1")
    );

    assert_not_found(
        store
            .create_enrollment_token("no-such-cp", "orphan-hash", 1_000, 100)
            .await,
        "an enrollment token of a missing compute plane",
    );
    assert_eq!(peek("orphan-hash", 500).await, Err(RedeemError::Unknown));

    // A hash is one token: stored again, for this or another compute plane, it is a
    // conflict, and the stored token still enrolls into its own compute plane.
    let other = compute_plane(&*store, &cp.tenant_id, "dev").await;
    store
        .create_enrollment_token(&cp.id, "dup-hash", 1_000, 100)
        .await
        .expect("token");
    assert_conflict(
        store
            .create_enrollment_token(&cp.id, "dup-hash", 2_000, 100)
            .await,
        "an enrollment token hash stored twice",
    );
    assert_conflict(
        store
            .create_enrollment_token(&other.id, "dup-hash", 2_000, 100)
            .await,
        "an enrollment token hash stored for another compute plane",
    );
    assert_eq!(peek("dup-hash", 500).await, Ok(cp.id.clone()));
    assert_eq!(
        peek("dup-hash", 1_500).await,
        Err(RedeemError::Expired),
        "the first token's expiry"
    );
}

/// Many agents racing with one token: exactly one enrolls, the others hear `Used`.
pub async fn concurrent_redeems_of_one_token_have_one_winner(store: Arc<dyn Store>) {
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    store
        .create_enrollment_token(&cp.id, "race-hash", 10_000, 0)
        .await
        .expect("token");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let serial = format!("racer-{i}");
                let r = store
                    .redeem_enrollment_token("race-hash", &cert(&serial, 90_000), 100)
                    .await
                    .expect("redeem does not fail");
                (serial, r)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (serial, r) = t.await.expect("task");
        match r {
            Ok(()) => winners.push(serial),
            Err(e) => assert_eq!(e, RedeemError::Used, "{serial} lost the race"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner, got {winners:?}");
    let winner = &winners[0];
    assert_eq!(
        cp_now(&*store, &cp.id)
            .await
            .agent
            .certificate_serial
            .as_ref(),
        Some(winner)
    );
    for i in 0..8 {
        let serial = format!("racer-{i}");
        assert_eq!(
            store
                .certificate_allowed(&cp.id, &serial)
                .await
                .expect("allowed"),
            &serial == winner,
            "{serial}"
        );
    }
}

/// A certificate opens sessions only for its own compute plane, until revocation; a
/// renewal becomes the agent's current one; missing compute planes are not found.
pub async fn certificates_are_allowed_until_revoked(store: Arc<dyn Store>) {
    let (t, a) = tenant_with_cp(&*store, "acme").await;
    let b = compute_plane(&*store, &t.id, "dev").await;
    store
        .record_certificate(&a.id, &cert("a1", 50_000))
        .await
        .expect("a1");
    store
        .record_certificate(&b.id, &cert("b1", 50_000))
        .await
        .expect("b1");
    let allowed = |cp: String, serial: &'static str| {
        let store = store.clone();
        async move {
            store
                .certificate_allowed(&cp, serial)
                .await
                .expect("allowed")
        }
    };
    assert!(allowed(a.id.clone(), "a1").await);
    assert!(!allowed(a.id.clone(), "unknown-serial").await);
    assert!(
        !allowed(b.id.clone(), "a1").await,
        "another compute plane's serial"
    );
    assert!(!allowed("no-such-cp".into(), "a1").await);

    // A renewal is the agent's newest certificate; the older one stays valid until revoked.
    store
        .record_certificate(&a.id, &cert("a2", 60_000))
        .await
        .expect("a2");
    let agent = cp_now(&*store, &a.id).await.agent;
    assert_eq!(agent.certificate_serial.as_deref(), Some("a2"));
    assert_eq!(agent.certificate_expires_at, Some(60_000));
    assert!(allowed(a.id.clone(), "a1").await);
    assert!(allowed(a.id.clone(), "a2").await);

    store.revoke_agent(&a.id).await.expect("revoke a");
    let agent = cp_now(&*store, &a.id).await.agent;
    assert!(agent.revoked);
    assert!(!agent.connected);
    assert!(!allowed(a.id.clone(), "a1").await, "revoked");
    assert!(!allowed(a.id.clone(), "a2").await, "revoked");
    assert!(
        allowed(b.id.clone(), "b1").await,
        "another compute plane is untouched"
    );
    assert!(!cp_now(&*store, &b.id).await.agent.revoked);

    // Still revoked: a certificate recorded now does not open sessions either.
    store
        .record_certificate(&a.id, &cert("a3", 70_000))
        .await
        .expect("a3");
    assert!(
        !allowed(a.id.clone(), "a3").await,
        "the compute plane is revoked"
    );
    // Enrolling again clears the flag for the new certificate only.
    store
        .create_enrollment_token(&a.id, "re-enroll", 10_000, 0)
        .await
        .expect("token");
    assert_eq!(
        store
            .redeem_enrollment_token("re-enroll", &cert("a4", 80_000), 100)
            .await
            .expect("redeem"),
        Ok(())
    );
    assert!(allowed(a.id.clone(), "a4").await);
    assert!(
        !allowed(a.id.clone(), "a1").await,
        "old certificates stay revoked"
    );
    assert!(
        !allowed(a.id.clone(), "a2").await,
        "old certificates stay revoked"
    );

    assert_not_found(
        store.record_certificate("no-such-cp", &cert("x1", 1)).await,
        "a certificate of a missing compute plane",
    );
    assert!(!allowed("no-such-cp".into(), "x1").await);
    assert_not_found(
        store.revoke_agent("no-such-cp").await,
        "revoking a missing compute plane",
    );
}

/// A tenant's compute planes are listed in byte order of their names, whatever the
/// database's collation.
pub async fn compute_planes_are_listed_in_byte_order(store: Arc<dyn Store>) {
    let t = tenant(&*store, "acme").await;
    for name in ["alphab", "beta", "alpha-z", "alpha", "alpha-2"] {
        compute_plane(&*store, &t.id, name).await;
    }
    let names: Vec<String> = store
        .list_compute_planes(&t.id)
        .await
        .expect("list")
        .into_iter()
        .map(|cp| cp.name)
        .collect();
    assert_eq!(
        names,
        ["alpha", "alpha-2", "alpha-z", "alphab", "beta"],
        "byte order"
    );
}
