//! TenantStore: tenants and API tokens.

use std::sync::Arc;

use tether_control_plane::authz::Role;
use tether_control_plane::store::{ApiToken, Store, Tenant};

use crate::{assert_conflict, assert_not_found, settings};

/// Tenants keep what they were created with, are listed by name, and a taken name is a
/// conflict.
pub async fn tenants_are_unique_by_name_and_listed_by_name(store: Arc<dyn Store>) {
    assert!(store.list_tenants().await.expect("list").is_empty());
    let beta = store
        .create_tenant("beta", Some("123456789012"), true, 1_700_000_000)
        .await
        .expect("create beta");
    assert_eq!(
        beta,
        Tenant {
            id: beta.id.clone(),
            name: "beta".into(),
            aws_account_id: Some("123456789012".into()),
            account_binding: true,
            created_at: 1_700_000_000,
            settings: settings(&[]),
        }
    );
    assert!(!beta.id.is_empty());
    let alpha = store
        .create_tenant("alpha", None, false, 1_700_000_100)
        .await
        .expect("create alpha");
    // Names whose byte order (SQLite's) differs from a linguistic collation's (glibc's
    // en_US.UTF-8 skips the hyphen first: "alphab" < "alpha-z", and so does the suite's
    // PostgreSQL database): the order must not depend on the database's locale.
    let mut others = Vec::new();
    for name in ["alphab", "alpha-z", "alpha-2"] {
        others.push(
            store
                .create_tenant(name, None, true, 1_700_000_200)
                .await
                .expect("create"),
        );
    }
    assert_ne!(alpha.id, beta.id);

    assert_conflict(
        store.create_tenant("beta", None, true, 5).await,
        "a second tenant named beta",
    );

    let listed = store.list_tenants().await.expect("list");
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["alpha", "alpha-2", "alpha-z", "alphab", "beta"],
        "listed by name, in byte order"
    );
    assert_eq!(listed[0], alpha);
    assert_eq!(listed[4], beta);
    for t in &others {
        assert!(listed.contains(t), "{} listed as created", t.name);
    }

    // Read back exactly as created, also the optional fields.
    assert_eq!(store.get_tenant(&beta.id).await.expect("get"), Some(beta));
    let got = store
        .get_tenant(&alpha.id)
        .await
        .expect("get")
        .expect("alpha");
    assert_eq!(got.aws_account_id, None);
    assert!(!got.account_binding);
    assert_eq!(got, alpha);
    assert_eq!(store.get_tenant("no-such-tenant").await.expect("get"), None);
}

/// Tokens are stored by hash with their role and tenant, found by hash and by id; a hash
/// stored twice is a conflict.
pub async fn api_tokens_are_found_by_hash_and_id(store: Arc<dyn Store>) {
    let acme = store
        .create_tenant("acme", None, true, 0)
        .await
        .expect("tenant");
    let admin = store
        .create_api_token(Some(&acme.id), Role::Admin, "hash-admin", 10)
        .await
        .expect("admin token");
    assert_eq!(admin.tenant_id.as_deref(), Some(acme.id.as_str()));
    assert_eq!(admin.role, Role::Admin);
    let viewer = store
        .create_api_token(Some(&acme.id), Role::Viewer, "hash-viewer", 11)
        .await
        .expect("viewer token");
    let platform = store
        .create_api_token(None, Role::PlatformAdmin, "hash-platform", 12)
        .await
        .expect("platform token");
    assert_eq!(platform.tenant_id, None);
    assert_ne!(admin.id, viewer.id);
    assert_ne!(viewer.id, platform.id);

    for t in [&admin, &viewer, &platform] {
        let hash = match t.role {
            Role::Admin => "hash-admin",
            Role::Viewer => "hash-viewer",
            _ => "hash-platform",
        };
        assert_eq!(
            store.find_api_token(hash).await.expect("find").as_ref(),
            Some(t),
            "by hash {hash}"
        );
        assert_eq!(
            store.api_token_by_id(&t.id).await.expect("by id").as_ref(),
            Some(t),
            "by id"
        );
    }
    assert_eq!(
        store.find_api_token("hash-unknown").await.expect("find"),
        None
    );
    // An id is not a hash, nor a hash an id.
    assert_eq!(store.find_api_token(&admin.id).await.expect("find"), None);
    assert_eq!(
        store.api_token_by_id("hash-admin").await.expect("by id"),
        None
    );

    assert_conflict(
        store
            .create_api_token(None, Role::Operator, "hash-viewer", 13)
            .await,
        "a token hash stored twice",
    );
    // The first token of that hash is unchanged.
    assert_eq!(
        store.find_api_token("hash-viewer").await.expect("find"),
        Some(ApiToken {
            id: viewer.id.clone(),
            tenant_id: Some(acme.id.clone()),
            role: Role::Viewer,
            user: None,
            user_id: None,
            expires_at: None,
        })
    );

    // A token of a tenant that does not exist is not stored.
    assert_not_found(
        store
            .create_api_token(Some("no-such-tenant"), Role::Admin, "hash-orphan", 14)
            .await,
        "a token of a missing tenant",
    );
    assert_eq!(
        store.find_api_token("hash-orphan").await.expect("find"),
        None
    );
}

/// The first platform admin is created once, however many replicas try at once; later
/// calls create nothing.
pub async fn bootstrap_creates_the_first_platform_admin_once(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let hash = format!("boot-{i}");
                let first = store
                    .bootstrap_platform_admin(&hash, 100 + i)
                    .await
                    .expect("bootstrap");
                (hash, first)
            })
        })
        .collect();
    let mut created = Vec::new();
    for t in tasks {
        let (hash, first) = t.await.expect("task");
        if first {
            created.push(hash);
        }
    }
    assert_eq!(
        created.len(),
        1,
        "exactly one bootstrap created the admin: {created:?}"
    );
    for i in 0..4 {
        let hash = format!("boot-{i}");
        let found = store.find_api_token(&hash).await.expect("find");
        if hash == created[0] {
            let token = found.expect("the bootstrapped token");
            assert_eq!(token.role, Role::PlatformAdmin);
            assert_eq!(token.tenant_id, None);
        } else {
            assert_eq!(found, None, "{hash} was not stored");
        }
    }
    assert!(
        !store
            .bootstrap_platform_admin("boot-later", 500)
            .await
            .expect("bootstrap again"),
        "the database had its first admin"
    );
    assert_eq!(
        store.find_api_token("boot-later").await.expect("find"),
        None
    );
}
