//! DesiredStateStore: settings of compute planes and tenants, and the desired state of a
//! whole tenant at once.

use std::sync::Arc;

use tether_control_plane::store::Store;

use crate::{
    assert_not_found, cluster, compute_plane, generation, glue_catalog, settings, tenant,
    tenant_with_cp,
};

/// Settings per compute plane and per tenant: the store returns both maps, each replaced
/// whole; a tenant-wide change bumps every compute plane of the tenant, and only those.
pub async fn settings_of_compute_plane_and_tenant(store: Arc<dyn Store>) {
    let (t, prod) = tenant_with_cp(&*store, "acme").await;
    let dev = compute_plane(&*store, &t.id, "dev").await;
    let (other_t, other_cp) = tenant_with_cp(&*store, "globex").await;
    let empty_t = tenant(&*store, "initech").await;

    let own = settings(&[("query_text_redaction", "none")]);
    assert_eq!(store.put_settings(&prod.id, &own).await.expect("put"), 1);
    let d = store.desired_state(&prod.id).await.expect("desired");
    assert_eq!(d.settings, own);
    assert!(d.tenant_settings.is_empty());
    assert_eq!(d.generation, 1);

    let tenant_wide = settings(&[("query_text_redaction", "literals"), ("telemetry", "on")]);
    assert_eq!(
        store
            .put_tenant_settings(&t.id, &tenant_wide)
            .await
            .expect("tenant settings"),
        2,
        "acme has two compute planes"
    );
    assert_eq!(generation(&*store, &prod.id).await, 2);
    assert_eq!(generation(&*store, &dev.id).await, 1);
    assert_eq!(generation(&*store, &other_cp.id).await, 0, "another tenant");
    assert_eq!(
        store
            .get_tenant(&t.id)
            .await
            .expect("get")
            .expect("acme")
            .settings,
        tenant_wide
    );
    let d = store.desired_state(&prod.id).await.expect("desired");
    assert_eq!(d.settings, own, "the compute plane's own, unmerged");
    assert_eq!(d.tenant_settings, tenant_wide);
    let d = store.desired_state(&dev.id).await.expect("desired");
    assert!(d.settings.is_empty());
    assert_eq!(d.tenant_settings, tenant_wide);
    let d = store.desired_state(&other_cp.id).await.expect("desired");
    assert!(d.tenant_settings.is_empty());
    assert!(
        store
            .get_tenant(&other_t.id)
            .await
            .expect("get")
            .expect("globex")
            .settings
            .is_empty()
    );

    // Replaced whole, not merged.
    let replaced = settings(&[("telemetry", "off")]);
    assert_eq!(
        store.put_settings(&prod.id, &replaced).await.expect("put"),
        3
    );
    assert_eq!(
        store.desired_state(&prod.id).await.expect("d").settings,
        replaced
    );
    assert_eq!(
        store
            .put_tenant_settings(&t.id, &settings(&[]))
            .await
            .expect("clear"),
        2
    );
    assert!(
        store
            .desired_state(&dev.id)
            .await
            .expect("d")
            .tenant_settings
            .is_empty()
    );
    assert_eq!(generation(&*store, &prod.id).await, 4);
    assert_eq!(generation(&*store, &dev.id).await, 2);

    assert_eq!(
        store
            .put_tenant_settings(&empty_t.id, &tenant_wide)
            .await
            .expect("no compute planes"),
        0
    );
    assert_not_found(
        store
            .put_tenant_settings("no-such-tenant", &tenant_wide)
            .await,
        "settings of a missing tenant",
    );
    assert_not_found(
        store.put_settings("no-such-cp", &own).await,
        "settings of a missing compute plane",
    );
}

/// One read of a whole tenant: each compute plane's state exactly as `desired_state`
/// gives it, live clusters only, nothing of another tenant.
pub async fn tenant_desired_states_cover_the_tenant_only(store: Arc<dyn Store>) {
    let (t, prod) = tenant_with_cp(&*store, "acme").await;
    let dev = compute_plane(&*store, &t.id, "dev").await;
    let idle = compute_plane(&*store, &t.id, "idle").await;
    let (other_t, other_cp) = tenant_with_cp(&*store, "globex").await;
    let empty_t = tenant(&*store, "initech").await;

    store
        .put_catalog(&prod.id, "lake", &glue_catalog("us-east-1"), 0)
        .await
        .expect("lake");
    store
        .put_cluster(&prod.id, "etl", &cluster(2, &["lake"]), 0)
        .await
        .expect("put")
        .expect("ok");
    store
        .put_cluster(&dev.id, "adhoc", &cluster(1, &[]), 0)
        .await
        .expect("put")
        .expect("ok");
    store
        .put_cluster(&dev.id, "gone", &cluster(1, &[]), 0)
        .await
        .expect("put")
        .expect("ok");
    store
        .delete_cluster(&dev.id, "gone", 0)
        .await
        .expect("delete");
    store
        .put_settings(&dev.id, &settings(&[("query_text_redaction", "none")]))
        .await
        .expect("settings");
    store
        .put_tenant_settings(&t.id, &settings(&[("telemetry", "on")]))
        .await
        .expect("tenant settings");
    store
        .put_cluster(&other_cp.id, "etl", &cluster(3, &[]), 0)
        .await
        .expect("put")
        .expect("ok");
    store
        .put_tenant_settings(&other_t.id, &settings(&[("telemetry", "off")]))
        .await
        .expect("other tenant settings");

    let mut all = store
        .tenant_desired_states(&t.id)
        .await
        .expect("tenant states");
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = Vec::new();
    for cp in [&prod, &dev, &idle] {
        expected.push((
            cp.id.clone(),
            store.desired_state(&cp.id).await.expect("desired"),
        ));
    }
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(all, expected);
    // And what that is, concretely.
    let dev_state = &all.iter().find(|(id, _)| *id == dev.id).expect("dev").1;
    assert_eq!(dev_state.clusters.keys().collect::<Vec<_>>(), ["adhoc"]);
    assert_eq!(
        dev_state.settings,
        settings(&[("query_text_redaction", "none")])
    );
    assert_eq!(dev_state.tenant_settings, settings(&[("telemetry", "on")]));
    let prod_state = &all.iter().find(|(id, _)| *id == prod.id).expect("prod").1;
    assert_eq!(prod_state.catalogs.keys().collect::<Vec<_>>(), ["lake"]);
    assert_eq!(prod_state.generation, 3);
    let idle_state = &all.iter().find(|(id, _)| *id == idle.id).expect("idle").1;
    assert!(idle_state.clusters.is_empty() && idle_state.catalogs.is_empty());
    assert_eq!(idle_state.generation, 1);

    // Only some compute planes (those a replica holds sessions of): the same documents,
    // and never another tenant's, even when asked for.
    let some = store
        .tenant_desired_states_of(&t.id, &[dev.id.clone(), other_cp.id.clone()])
        .await
        .expect("some states");
    assert_eq!(some.len(), 1, "dev only: other_cp is another tenant's");
    assert_eq!(
        &some[0],
        all.iter().find(|(id, _)| *id == dev.id).expect("dev")
    );
    assert!(
        store
            .tenant_desired_states_of(&t.id, &[])
            .await
            .expect("none")
            .is_empty()
    );

    let others = store
        .tenant_desired_states(&other_t.id)
        .await
        .expect("other tenant");
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].0, other_cp.id);
    assert_eq!(others[0].1.clusters.len(), 1);
    assert_eq!(
        others[0].1.tenant_settings,
        settings(&[("telemetry", "off")])
    );
    assert!(
        store
            .tenant_desired_states(&empty_t.id)
            .await
            .expect("no compute planes")
            .is_empty()
    );
}
