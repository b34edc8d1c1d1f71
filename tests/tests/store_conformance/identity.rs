//! IdentityStore: identity providers, users and their tokens, pending OIDC sign-ins.

use std::sync::Arc;

use serde_json::json;
use tether_control_plane::authz::Role;
use tether_control_plane::identity::{ProviderConfig, Via};
use tether_control_plane::store::{PendingLogin, Scope, Store};

use crate::{assert_conflict, assert_not_found};

fn oidc(issuer: &str) -> ProviderConfig {
    serde_json::from_value(
        json!({"kind": "oidc", "issuer": issuer, "client_id": "tether",
        "groups_claim": "groups", "role_mapping": {"analysts": "viewer"}}),
    )
    .expect("config")
}

/// One provider per tenant, replaced whole, gone for good when deleted; a tenant that does
/// not exist has none.
pub async fn identity_providers_are_per_tenant_and_replaced_whole(store: Arc<dyn Store>) {
    let acme = store
        .create_tenant("acme", None, true, 1)
        .await
        .expect("acme");
    let globex = store
        .create_tenant("globex", None, true, 1)
        .await
        .expect("globex");
    assert_eq!(store.identity_provider(&acme.id).await.expect("get"), None);
    store
        .put_identity_provider(&acme.id, &oidc("https://a.example.com"), 2)
        .await
        .expect("put");
    let ldap: ProviderConfig = serde_json::from_value(json!({"kind": "ldap", "url": "ldaps://d.example.com",
        "start_tls": false, "ca_pem": null, "user_dn_template": "uid={username},dc=x", "group_base_dn": "dc=x",
        "group_filter": "(member={user_dn})", "bind_dn": null, "role_mapping": {"ops": "operator"}}))
    .expect("ldap config");
    store
        .put_identity_provider(&acme.id, &ldap, 3)
        .await
        .expect("replace");
    assert_eq!(
        store.identity_provider(&acme.id).await.expect("get"),
        Some(ldap)
    );
    assert_eq!(
        store.identity_provider(&globex.id).await.expect("get"),
        None
    );
    assert_not_found(
        store
            .put_identity_provider("no-such-tenant", &oidc("https://x"), 4)
            .await,
        "a provider of a missing tenant",
    );
    assert!(
        store
            .delete_identity_provider(&acme.id, 5)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_identity_provider(&acme.id, 6)
            .await
            .expect("again")
    );
    assert_eq!(store.identity_provider(&acme.id).await.expect("get"), None);
}

/// A sign-in creates the user once and updates their name, role and last sign-in after;
/// users are per tenant (and the platform apart); their tokens carry their name, expire,
/// and end when the tenant's provider is removed.
pub async fn users_are_recorded_at_each_sign_in_and_own_expiring_tokens(store: Arc<dyn Store>) {
    let acme = store
        .create_tenant("acme", None, true, 1)
        .await
        .expect("acme");
    let globex = store
        .create_tenant("globex", None, true, 1)
        .await
        .expect("globex");
    let a = Scope::Tenant(&acme.id);
    let alice = store
        .sign_in_user(a, Via::Oidc, "sub-1", "alice@example.com", Role::Viewer, 10)
        .await
        .expect("first sign-in");
    assert_eq!((alice.created_at, alice.last_sign_in_at), (10, 10));
    assert_eq!(alice.tenant_id.as_deref(), Some(acme.id.as_str()));
    let again = store
        .sign_in_user(
            a,
            Via::Oidc,
            "sub-1",
            "alice@corp.example.com",
            Role::Admin,
            20,
        )
        .await
        .expect("second sign-in");
    assert_eq!(again.id, alice.id, "the same person");
    assert_eq!((again.created_at, again.last_sign_in_at), (10, 20));
    assert_eq!(
        (again.name.as_str(), again.role),
        ("alice@corp.example.com", Role::Admin)
    );
    // The same subject through LDAP, in another tenant, or on the platform: other users.
    let by_ldap = store
        .sign_in_user(a, Via::Ldap, "sub-1", "alice", Role::Viewer, 30)
        .await
        .expect("ldap");
    let in_globex = store
        .sign_in_user(
            Scope::Tenant(&globex.id),
            Via::Oidc,
            "sub-1",
            "alice@globex.example",
            Role::Viewer,
            30,
        )
        .await
        .expect("globex");
    let staff = store
        .sign_in_user(
            Scope::Platform,
            Via::Oidc,
            "sub-1",
            "ops@vendor.example",
            Role::PlatformAdmin,
            30,
        )
        .await
        .expect("platform");
    assert_eq!(staff.tenant_id, None);
    let ids = [&again.id, &by_ldap.id, &in_globex.id, &staff.id];
    for (i, x) in ids.iter().enumerate() {
        for y in &ids[i + 1..] {
            assert_ne!(x, y);
        }
    }
    let listed = store.list_users(&acme.id).await.expect("list");
    assert_eq!(
        listed.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        vec!["alice", "alice@corp.example.com"]
    );
    assert_eq!(
        store.get_user(&staff.id).await.expect("get"),
        Some(staff.clone())
    );
    assert_not_found(
        store
            .sign_in_user(
                Scope::Tenant("no-such"),
                Via::Oidc,
                "s",
                "n",
                Role::Viewer,
                1,
            )
            .await,
        "a user of a missing tenant",
    );

    let t = store
        .create_user_token(&again, Role::Operator, "hash-alice", 1_000, 25)
        .await
        .expect("token");
    let found = store
        .find_api_token("hash-alice")
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found, t);
    assert_eq!(
        found.user.as_deref(),
        Some("alice@corp.example.com via oidc")
    );
    assert_eq!(found.user_id.as_deref(), Some(again.id.as_str()));
    assert_eq!(
        (found.role, found.expires_at),
        (Role::Operator, Some(1_000))
    );
    assert!(found.live(999) && !found.live(1_000));
    assert_eq!(
        store.api_token_by_id(&t.id).await.expect("by id"),
        Some(found)
    );
    assert_conflict(
        store
            .create_user_token(&again, Role::Viewer, "hash-alice", 2_000, 26)
            .await,
        "a token hash stored twice",
    );
    // A refused sign-in ends that person's tokens only.
    let other = store
        .create_user_token(&by_ldap, Role::Viewer, "hash-ldap", 9_000, 25)
        .await
        .expect("ldap token");
    assert_eq!(
        store
            .end_user_tokens(a, Via::Ldap, "sub-1", 300)
            .await
            .expect("end"),
        1
    );
    assert_eq!(
        store
            .find_api_token("hash-ldap")
            .await
            .expect("find")
            .and_then(|t| t.expires_at),
        Some(300)
    );
    assert_eq!(
        store
            .find_api_token("hash-alice")
            .await
            .expect("find")
            .and_then(|t| t.expires_at),
        Some(1_000)
    );
    assert_eq!(
        store
            .end_user_tokens(a, Via::Oidc, "nobody", 300)
            .await
            .expect("none"),
        0
    );
    let _ = other;
    // A tenant's own tokens are nobody's and never expire.
    let plain = store
        .create_api_token(Some(&acme.id), Role::Admin, "hash-plain", 1)
        .await
        .expect("plain");
    assert_eq!((plain.user, plain.expires_at), (None, None));
    // A dashboard session of the person's token names them.
    store
        .create_dashboard_session("sess-1", &t.id, "csrf-1", 100, 900)
        .await
        .expect("session");
    let s = store
        .dashboard_session("sess-1", 200)
        .await
        .expect("session")
        .expect("live");
    assert_eq!(
        s.token.user.as_deref(),
        Some("alice@corp.example.com via oidc")
    );
    // Removing the provider ends acme's people's tokens (and only theirs) at that time.
    store
        .put_identity_provider(&acme.id, &oidc("https://a.example.com"), 2)
        .await
        .expect("put");
    let globex_token = store
        .create_user_token(&in_globex, Role::Viewer, "hash-globex", 5_000, 25)
        .await
        .expect("globex token");
    store
        .delete_identity_provider(&acme.id, 500)
        .await
        .expect("delete");
    let ended = store
        .find_api_token("hash-alice")
        .await
        .expect("find")
        .expect("still stored");
    assert_eq!(ended.expires_at, Some(500));
    let kept = store
        .find_api_token("hash-globex")
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(kept.expires_at, globex_token.expires_at);
    assert_eq!(
        store
            .find_api_token("hash-plain")
            .await
            .expect("find")
            .and_then(|t| t.expires_at),
        None
    );
}

/// A pending sign-in is found by its state's hash once, only before it expires; expired
/// ones are swept when others are kept.
pub async fn pending_sign_ins_are_taken_once_and_expire(store: Arc<dyn Store>) {
    let login = |n: &str| PendingLogin {
        scope: "tenant-1".into(),
        nonce: format!("nonce-{n}"),
        pkce_verifier: format!("verifier-{n}"),
    };
    store
        .put_pending_login("state-a", &login("a"), 1_000, 2_000)
        .await
        .expect("put a");
    store
        .put_pending_login("state-b", &login("b"), 1_000, 1_500)
        .await
        .expect("put b");
    assert_conflict(
        store
            .put_pending_login("state-a", &login("x"), 1_100, 2_000)
            .await,
        "a state stored twice",
    );
    assert_eq!(
        store
            .take_pending_login("state-a", 1_200)
            .await
            .expect("take"),
        Some(login("a"))
    );
    assert_eq!(
        store
            .take_pending_login("state-a", 1_200)
            .await
            .expect("again"),
        None,
        "used once"
    );
    assert_eq!(
        store
            .take_pending_login("state-b", 1_600)
            .await
            .expect("late"),
        None,
        "expired"
    );
    assert_eq!(
        store
            .take_pending_login("state-c", 1_000)
            .await
            .expect("unknown"),
        None
    );
    // Sweeping: an expired one is gone even for a caller that ignores expiry.
    store
        .put_pending_login("state-d", &login("d"), 1_000, 1_100)
        .await
        .expect("put d");
    store
        .put_pending_login("state-e", &login("e"), 5_000, 6_000)
        .await
        .expect("put e");
    assert_eq!(
        store.take_pending_login("state-d", 0).await.expect("swept"),
        None
    );
}
