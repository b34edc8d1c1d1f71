//! DesiredStateStore: clusters, catalogs, settings, generations, and the agent's reports.

use std::collections::BTreeMap;
use std::sync::Arc;

use tether_control_plane::store::{
    CatalogRow, ClusterRow, DesiredStateConflict, Store, StoredDesiredState,
};
use tether_shared::status::Condition;

use crate::{
    assert_not_found, cluster, compute_plane, cp_now, generation, glue_catalog, tenant_with_cp,
};

pub(crate) fn condition(cluster: &str, kind: &str, status: &str) -> Condition {
    Condition {
        cluster: cluster.to_owned(),
        kind: kind.to_owned(),
        status: status.to_owned(),
        reason: "Reconciled".to_owned(),
        message: format!("{kind} is {status}"),
        last_transition_unix_ms: 1_700_000_000_123,
    }
}

/// Puts and reads back clusters and catalogs; every change bumps the generation by
/// exactly one and stamps the row with it.
pub async fn clusters_and_catalogs_bump_the_generation_by_one(store: Arc<dyn Store>) {
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    let empty = store.desired_state(&cp.id).await.expect("desired state");
    assert_eq!(empty, StoredDesiredState::default(), "a new compute plane");

    let lake = glue_catalog("us-east-1");
    assert_eq!(
        store
            .put_catalog(&cp.id, "lake", &lake, 10)
            .await
            .expect("put lake"),
        1
    );
    assert_eq!(
        store.get_catalog(&cp.id, "lake").await.expect("get"),
        Some(CatalogRow {
            name: "lake".into(),
            spec: lake.clone(),
            generation: 1,
        })
    );
    assert_eq!(generation(&*store, &cp.id).await, 1);

    let etl = cluster(2, &["lake"]);
    assert_eq!(
        store
            .put_cluster(&cp.id, "etl", &etl, 20)
            .await
            .expect("put etl"),
        Ok(2)
    );
    assert_eq!(
        store.get_cluster(&cp.id, "etl").await.expect("get"),
        Some(ClusterRow {
            name: "etl".into(),
            spec: etl,
            generation: 2,
            deleted_generation: None,
            status: None,
            observed_generation: 0,
        })
    );
    // Replacing a cluster is one more change.
    let etl_bigger = cluster(5, &["lake"]);
    assert_eq!(
        store
            .put_cluster(&cp.id, "etl", &etl_bigger, 30)
            .await
            .expect("replace etl"),
        Ok(3)
    );
    let row = store
        .get_cluster(&cp.id, "etl")
        .await
        .expect("get")
        .expect("etl");
    assert_eq!(row.spec, etl_bigger);
    assert_eq!(row.generation, 3);

    let adhoc = cluster(1, &[]);
    assert_eq!(
        store
            .put_cluster(&cp.id, "adhoc", &adhoc, 40)
            .await
            .expect("put adhoc"),
        Ok(4)
    );
    let names: Vec<String> = store
        .list_clusters(&cp.id)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["adhoc", "etl"], "clusters by name");

    let lake_eu = glue_catalog("eu-west-1");
    assert_eq!(
        store
            .put_catalog(&cp.id, "lake", &lake_eu, 50)
            .await
            .expect("replace lake"),
        5
    );
    let warehouse = glue_catalog("us-west-2");
    assert_eq!(
        store
            .put_catalog(&cp.id, "archive", &warehouse, 60)
            .await
            .expect("put archive"),
        6
    );
    assert_eq!(
        store.list_catalogs(&cp.id).await.expect("list"),
        vec![
            CatalogRow {
                name: "archive".into(),
                spec: warehouse.clone(),
                generation: 6,
            },
            CatalogRow {
                name: "lake".into(),
                spec: lake_eu.clone(),
                generation: 5,
            },
        ],
        "catalogs by name"
    );

    let d = store.desired_state(&cp.id).await.expect("desired state");
    assert_eq!(d.generation, 6);
    assert_eq!(
        d.clusters,
        BTreeMap::from([("adhoc".into(), adhoc), ("etl".into(), etl_bigger)])
    );
    assert_eq!(
        d.catalogs,
        BTreeMap::from([("archive".into(), warehouse), ("lake".into(), lake_eu)])
    );
    let now = cp_now(&*store, &cp.id).await;
    assert_eq!(now.generation, 6);
    assert_eq!(now.applied_generation, 0, "nothing acked yet");

    // Deleting a catalog nobody attaches: one change. Deleting an absent one: none.
    assert_eq!(
        store
            .delete_catalog(&cp.id, "archive")
            .await
            .expect("delete"),
        Ok(Some(7))
    );
    assert_eq!(
        store.get_catalog(&cp.id, "archive").await.expect("get"),
        None
    );
    assert_eq!(
        store
            .delete_catalog(&cp.id, "archive")
            .await
            .expect("delete again"),
        Ok(None)
    );
    assert_eq!(generation(&*store, &cp.id).await, 7);
    assert_eq!(store.get_cluster(&cp.id, "nope").await.expect("get"), None);
    assert_eq!(store.get_catalog(&cp.id, "nope").await.expect("get"), None);
}

/// A cluster attaching a catalog the compute plane lacks is refused, naming the first
/// missing one by index, and changes nothing.
pub async fn cluster_with_unknown_catalog_changes_nothing(store: Arc<dyn Store>) {
    let (t, cp) = tenant_with_cp(&*store, "acme").await;
    let other = compute_plane(&*store, &t.id, "dev").await;
    store
        .put_catalog(&cp.id, "lake", &glue_catalog("us-east-1"), 0)
        .await
        .expect("lake");
    store
        .put_catalog(&other.id, "warehouse", &glue_catalog("us-east-1"), 0)
        .await
        .expect("warehouse elsewhere");

    assert_eq!(
        store
            .put_cluster(&cp.id, "etl", &cluster(2, &["lake", "missing", "gone"]), 0)
            .await
            .expect("put"),
        Err(DesiredStateConflict::UnknownCatalog(1, "missing".into()))
    );
    assert_eq!(generation(&*store, &cp.id).await, 1, "generation unchanged");
    assert_eq!(store.get_cluster(&cp.id, "etl").await.expect("get"), None);
    // Another compute plane's catalog does not count.
    assert_eq!(
        store
            .put_cluster(&cp.id, "etl", &cluster(2, &["warehouse"]), 0)
            .await
            .expect("put"),
        Err(DesiredStateConflict::UnknownCatalog(0, "warehouse".into()))
    );

    // A refused replacement keeps the stored cluster.
    let etl = cluster(2, &["lake"]);
    assert_eq!(
        store
            .put_cluster(&cp.id, "etl", &etl, 0)
            .await
            .expect("put"),
        Ok(2)
    );
    assert_eq!(
        store
            .put_cluster(&cp.id, "etl", &cluster(9, &["lake", "nope"]), 0)
            .await
            .expect("put"),
        Err(DesiredStateConflict::UnknownCatalog(1, "nope".into()))
    );
    let row = store
        .get_cluster(&cp.id, "etl")
        .await
        .expect("get")
        .expect("etl");
    assert_eq!(row.spec, etl);
    assert_eq!(row.generation, 2);
    assert_eq!(generation(&*store, &cp.id).await, 2);
    assert_eq!(generation(&*store, &other.id).await, 1);
}

/// A catalog attached to a live cluster is not deleted; the answer names the clusters,
/// and nothing changes. A cluster pending deletion no longer holds it.
pub async fn catalog_in_use_is_not_deleted(store: Arc<dyn Store>) {
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    let lake = glue_catalog("us-east-1");
    store
        .put_catalog(&cp.id, "lake", &lake, 0)
        .await
        .expect("lake");
    store
        .put_catalog(&cp.id, "other", &glue_catalog("us-east-1"), 0)
        .await
        .expect("other");
    for (name, catalogs) in [
        ("b-etl", &["other", "lake"][..]),
        ("a-adhoc", &["lake"][..]),
        ("c-plain", &["other"][..]),
    ] {
        store
            .put_cluster(&cp.id, name, &cluster(1, catalogs), 0)
            .await
            .expect("put")
            .expect("catalogs exist");
    }
    let before = generation(&*store, &cp.id).await;
    let in_use = |r: Result<Option<i64>, DesiredStateConflict>| match r {
        Err(DesiredStateConflict::CatalogInUse(mut names)) => {
            names.sort();
            names
        }
        other => panic!("expected CatalogInUse, got {other:?}"),
    };
    let r = store.delete_catalog(&cp.id, "lake").await.expect("delete");
    assert_eq!(in_use(r), ["a-adhoc", "b-etl"]);
    assert_eq!(generation(&*store, &cp.id).await, before, "nothing changed");
    assert_eq!(
        store
            .get_catalog(&cp.id, "lake")
            .await
            .expect("get")
            .map(|c| c.spec),
        Some(lake)
    );

    // Once a-adhoc is being deleted, only b-etl holds the catalog.
    store
        .delete_cluster(&cp.id, "a-adhoc", 0)
        .await
        .expect("delete a-adhoc")
        .expect("live");
    let r = store.delete_catalog(&cp.id, "lake").await.expect("delete");
    assert_eq!(in_use(r), ["b-etl"]);

    // Detach it from b-etl: the catalog goes, with one more generation.
    store
        .put_cluster(&cp.id, "b-etl", &cluster(1, &["other"]), 0)
        .await
        .expect("put")
        .expect("ok");
    let g = generation(&*store, &cp.id).await;
    assert_eq!(
        store.delete_catalog(&cp.id, "lake").await.expect("delete"),
        Ok(Some(g + 1))
    );
    assert_eq!(store.get_catalog(&cp.id, "lake").await.expect("get"), None);
    let d = store.desired_state(&cp.id).await.expect("desired");
    assert_eq!(d.generation, g + 1);
    assert_eq!(d.catalogs.keys().collect::<Vec<_>>(), ["other"]);
}

/// A deleted cluster is marked with its deletion's generation and leaves the desired
/// state at once; the row goes when the agent applied that generation. Putting it again
/// before then revives it.
pub async fn deleted_cluster_goes_once_applied(store: Arc<dyn Store>) {
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    store
        .put_cluster(&cp.id, "etl", &cluster(2, &[]), 0)
        .await
        .expect("put")
        .expect("ok");
    store
        .put_cluster(&cp.id, "adhoc", &cluster(1, &[]), 0)
        .await
        .expect("put")
        .expect("ok");
    assert_eq!(
        store
            .delete_cluster(&cp.id, "etl", 5)
            .await
            .expect("delete"),
        Some(3)
    );
    let row = store
        .get_cluster(&cp.id, "etl")
        .await
        .expect("get")
        .expect("pending");
    assert_eq!(row.deleted_generation, Some(3));
    assert_eq!(row.generation, 3);
    assert_eq!(
        store
            .list_clusters(&cp.id)
            .await
            .expect("list")
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["adhoc", "etl"],
        "pending deletions are listed"
    );
    let d = store.desired_state(&cp.id).await.expect("desired");
    assert_eq!(d.generation, 3);
    assert_eq!(d.clusters.keys().collect::<Vec<_>>(), ["adhoc"]);

    // Not live any more (or never was): nothing to delete, nothing bumped.
    assert_eq!(
        store
            .delete_cluster(&cp.id, "etl", 6)
            .await
            .expect("delete"),
        None
    );
    assert_eq!(
        store
            .delete_cluster(&cp.id, "nope", 6)
            .await
            .expect("delete"),
        None
    );
    assert_eq!(generation(&*store, &cp.id).await, 3);

    // Applied below the deletion: the row stays.
    let conds = vec![condition("adhoc", "Ready", "True")];
    store
        .record_applied(&cp.id, 2, &conds)
        .await
        .expect("applied 2");
    let now = cp_now(&*store, &cp.id).await;
    assert_eq!(now.applied_generation, 2);
    assert_eq!(now.applied_conditions, conds);
    assert!(
        store
            .get_cluster(&cp.id, "etl")
            .await
            .expect("get")
            .is_some()
    );
    // Applied at the deletion: it is done.
    store
        .record_applied(&cp.id, 3, &[])
        .await
        .expect("applied 3");
    assert_eq!(store.get_cluster(&cp.id, "etl").await.expect("get"), None);
    assert!(cp_now(&*store, &cp.id).await.applied_conditions.is_empty());
    assert_eq!(store.list_clusters(&cp.id).await.expect("list").len(), 1);

    // Deleted, then put again before the agent applied: live again, not deleted later.
    assert_eq!(
        store
            .delete_cluster(&cp.id, "adhoc", 7)
            .await
            .expect("delete"),
        Some(4)
    );
    let revived = cluster(3, &[]);
    assert_eq!(
        store
            .put_cluster(&cp.id, "adhoc", &revived, 8)
            .await
            .expect("put"),
        Ok(5)
    );
    let row = store
        .get_cluster(&cp.id, "adhoc")
        .await
        .expect("get")
        .expect("adhoc");
    assert_eq!(row.deleted_generation, None);
    assert_eq!(row.spec, revived);
    store
        .record_applied(&cp.id, 5, &[])
        .await
        .expect("applied 5");
    assert_eq!(
        store
            .get_cluster(&cp.id, "adhoc")
            .await
            .expect("get")
            .map(|c| c.spec),
        Some(revived.clone())
    );
    assert_eq!(
        store.desired_state(&cp.id).await.expect("desired").clusters,
        BTreeMap::from([("adhoc".to_owned(), revived)])
    );
}

/// Desired-state writes and reads of a compute plane that does not exist.
pub async fn missing_compute_plane_is_not_found(store: Arc<dyn Store>) {
    assert_not_found(store.desired_state("no-such-cp").await, "desired_state");
    assert_not_found(
        store
            .put_catalog("no-such-cp", "lake", &glue_catalog("us-east-1"), 0)
            .await,
        "put_catalog",
    );
    assert_not_found(
        store
            .put_cluster("no-such-cp", "etl", &cluster(1, &[]), 0)
            .await,
        "put_cluster without catalogs",
    );
    // Not an unknown catalog: the compute plane is missing before any catalog is.
    assert_not_found(
        store
            .put_cluster("no-such-cp", "etl", &cluster(1, &["lake"]), 0)
            .await,
        "put_cluster with catalogs",
    );
    // Not `Ok(None)` (no such cluster or catalog): there is no compute plane to look in.
    assert_not_found(
        store.delete_cluster("no-such-cp", "etl", 0).await,
        "delete_cluster",
    );
    assert_not_found(
        store.delete_catalog("no-such-cp", "lake").await,
        "delete_catalog",
    );
    assert!(
        store
            .list_clusters("no-such-cp")
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        store
            .list_catalogs("no-such-cp")
            .await
            .expect("list")
            .is_empty()
    );
}

/// Clusters and catalogs are listed in byte order of their names, whatever the database's
/// collation ("alpha-z" before "alphab": a linguistic collation that skips punctuation
/// puts them the other way round).
pub async fn clusters_and_catalogs_are_listed_in_byte_order(store: Arc<dyn Store>) {
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    let names = ["alphab", "beta", "alpha-z", "alpha", "alpha-2"];
    for name in names {
        store
            .put_catalog(&cp.id, name, &glue_catalog("us-east-1"), 0)
            .await
            .expect("put catalog");
    }
    for name in names {
        store
            .put_cluster(&cp.id, name, &cluster(1, &[name]), 0)
            .await
            .expect("put cluster")
            .expect("its catalog exists");
    }
    let byte_order = ["alpha", "alpha-2", "alpha-z", "alphab", "beta"];
    let clusters: Vec<String> = store
        .list_clusters(&cp.id)
        .await
        .expect("list clusters")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(clusters, byte_order, "clusters in byte order");
    let catalogs: Vec<String> = store
        .list_catalogs(&cp.id)
        .await
        .expect("list catalogs")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(catalogs, byte_order, "catalogs in byte order");
}
