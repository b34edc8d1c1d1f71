//! The store conformance suite: one set of test functions, each taking an
//! `Arc<dyn Store>`, run against both backends — SQLite (a file in a temp dir) and
//! PostgreSQL (a fresh database on the one server this test binary shares, see
//! `tether_tests::harness::postgres`). A backend conforms when every function passes on
//! it: callers hold an `Arc<dyn Store>` and must not be able to tell which one it is.
//!
//! [`conformance!`] turns each function `module::f` into `sqlite::f` and `postgres::f`
//! (`cargo test -p tether-tests --test store_conformance postgres::` runs one backend).
//! Assertions are on what the store gives back, through the trait only.

// The crate root's modules would be looked up next to it, among the other test binaries.
#[path = "store_conformance/agent_reports.rs"]
mod agent_reports;
#[path = "store_conformance/audit.rs"]
mod audit;
#[path = "store_conformance/compute_planes.rs"]
mod compute_planes;
#[path = "store_conformance/concurrency.rs"]
mod concurrency;
#[path = "store_conformance/desired.rs"]
mod desired;
#[path = "store_conformance/identity.rs"]
mod identity;
#[path = "store_conformance/presence.rs"]
mod presence;
#[path = "store_conformance/query_log.rs"]
mod query_log;
#[path = "store_conformance/replicas.rs"]
mod replicas;
#[path = "store_conformance/secrets.rs"]
mod secrets;
#[path = "store_conformance/support.rs"]
mod support;
#[path = "store_conformance/telemetry.rs"]
mod telemetry;
#[path = "store_conformance/tenant_wide.rs"]
mod tenant_wide;
#[path = "store_conformance/tenants.rs"]
mod tenants;
#[path = "store_conformance/usage.rs"]
mod usage;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use serde_json::{Value, json};
use tether_control_plane::store::{ComputePlane, Settings, Store, StoreError, Tenant};
use tether_shared::spec::{CatalogSpec, ClusterSpec};

/// For each `module::function`, a `#[tokio::test]` per backend that hands the function a
/// fresh, empty store.
macro_rules! conformance {
    ($($module:ident :: $f:ident),+ $(,)?) => {
        /// The suite against [`tether_control_plane::store::sqlite::SqliteStore`].
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $f() {
                    let (_dir, store) = super::sqlite_store().await;
                    super::$module::$f(store).await;
                }
            )+
        }
        /// The suite against [`tether_control_plane::store::postgres::PgStore`].
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $f() {
                    let store = super::postgres_store().await;
                    super::$module::$f(store).await;
                }
            )+
        }
    };
}

conformance!(
    support::support_bundles_are_kept_once_and_only_in_time,
    tenants::tenants_are_unique_by_name_and_listed_by_name,
    tenants::api_tokens_are_found_by_hash_and_id,
    tenants::bootstrap_creates_the_first_platform_admin_once,
    identity::identity_providers_are_per_tenant_and_replaced_whole,
    identity::users_are_recorded_at_each_sign_in_and_own_expiring_tokens,
    identity::pending_sign_ins_are_taken_once_and_expire,
    compute_planes::compute_planes_belong_to_one_tenant,
    compute_planes::compute_planes_are_listed_in_byte_order,
    compute_planes::enrollment_tokens_peek_and_redeem,
    compute_planes::concurrent_redeems_of_one_token_have_one_winner,
    compute_planes::certificates_are_allowed_until_revoked,
    desired::clusters_and_catalogs_bump_the_generation_by_one,
    desired::clusters_and_catalogs_are_listed_in_byte_order,
    desired::cluster_with_unknown_catalog_changes_nothing,
    desired::catalog_in_use_is_not_deleted,
    desired::deleted_cluster_goes_once_applied,
    agent_reports::applied_generation_is_capped_and_never_lowered,
    agent_reports::older_acks_keep_the_applied_conditions,
    tenant_wide::settings_of_compute_plane_and_tenant,
    tenant_wide::tenant_desired_states_cover_the_tenant_only,
    agent_reports::cluster_status_round_trips_and_observed_never_goes_down,
    desired::missing_compute_plane_is_not_found,
    presence::sessions_heartbeats_and_stale_sessions,
    presence::one_update_applies_in_order_and_batches_cover_many,
    presence::mark_all_disconnected_ends_every_session,
    presence::claim_session_names_the_superseded_session,
    telemetry::ingest_is_idempotent_by_sequence_and_query_id,
    telemetry::large_batch_lands_exactly_once,
    query_log::query_log_filters_and_pages,
    query_log::metric_samples_filter_by_name_cluster_and_window,
    telemetry::purge_deletes_only_older_telemetry,
    telemetry::purge_of_many_rows_deletes_them_all,
    telemetry::telemetry_of_missing_compute_plane_is_not_found,
    audit::audit_log_is_newest_first_filtered_and_paged,
    audit::dashboard_sessions_live_until_expiry,
    audit::dashboard_sessions_need_their_token_and_a_unique_id,
    usage::usage_is_node_time_per_cluster_and_hour,
    secrets::secrets_are_stored_once_or_replaced,
    replicas::replica_leases_expire_and_release_their_sessions,
    replicas::held_sessions_report_generation_and_holder,
    concurrency::concurrent_desired_state_writers_never_fail,
    concurrency::concurrent_ingests_for_many_compute_planes_all_land,
);

/// A fresh SQLite store; keep the dir for the test's duration.
async fn sqlite_store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = tether_control_plane::store::sqlite::SqliteStore::open(&url)
        .await
        .expect("open the SQLite store");
    (dir, Arc::new(store))
}

/// The default collation of the suite's PostgreSQL databases: ICU's root locale with
/// punctuation ignored at first ("alphab" < "alpha-z"). Production databases are usually
/// created with a linguistic locale such as en_US.UTF-8, which orders like this; in the
/// test server's C locale an ordering that depends on the collation would go unnoticed.
const LINGUISTIC_COLLATION: &str = "und-u-ka-shifted";

/// A fresh PostgreSQL store: a new database on the shared server, whose default collation
/// is [`LINGUISTIC_COLLATION`].
async fn postgres_store() -> Arc<dyn Store> {
    use sqlx::Connection;
    let server = tether_tests::harness::postgres::shared();
    let name = format!("tether_{}", uuid::Uuid::new_v4().simple());
    let maintenance = server.url("postgres");
    let mut conn = sqlx::PgConnection::connect(&maintenance)
        .await
        .unwrap_or_else(|e| panic!("connect to {maintenance}: {e}"));
    // A uuid's hex digits and a constant: nothing to quote.
    let create = format!(
        "CREATE DATABASE {name} TEMPLATE template0 LOCALE 'C' \
         LOCALE_PROVIDER icu ICU_LOCALE '{LINGUISTIC_COLLATION}'"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(create.clone()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{create} (needs PostgreSQL 15+ built with ICU): {e}"));
    let _ = conn.close().await;
    let url = server.url(&name);
    let store = tether_control_plane::store::postgres::PgStore::open(&url)
        .await
        .unwrap_or_else(|e| panic!("open the PostgreSQL store at {url}: {e}"));
    let (linguistic,): (bool,) = sqlx::query_as("SELECT 'alphab' < 'alpha-z'")
        .fetch_one(store.pool())
        .await
        .expect("compare under the default collation");
    assert!(
        linguistic,
        "database {name} orders bytes, not linguistically: the suite would not notice an \
         ORDER BY that depends on the collation"
    );
    Arc::new(store)
}

// ---- fixtures -------------------------------------------------------------------------

/// Tenant `name`, created at time 0.
async fn tenant(store: &dyn Store, name: &str) -> Tenant {
    store
        .create_tenant(name, None, true, 0)
        .await
        .unwrap_or_else(|e| panic!("create tenant {name}: {e}"))
}

/// Compute plane `name` of `tenant_id` in us-east-1.
async fn compute_plane(store: &dyn Store, tenant_id: &str, name: &str) -> ComputePlane {
    store
        .create_compute_plane(tenant_id, name, "us-east-1", 0)
        .await
        .unwrap_or_else(|e| panic!("create compute plane {name}: {e}"))
}

/// Tenant `name` with its compute plane `prod`.
async fn tenant_with_cp(store: &dyn Store, name: &str) -> (Tenant, ComputePlane) {
    let t = tenant(store, name).await;
    let cp = compute_plane(store, &t.id, "prod").await;
    (t, cp)
}

/// A cluster spec from its API JSON; it must validate, as the API would insist.
fn cluster_spec(v: Value) -> ClusterSpec {
    let spec: ClusterSpec =
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("cluster spec {v}: {e}"));
    spec.validate()
        .unwrap_or_else(|e| panic!("cluster spec {v}: {e}"));
    spec
}

/// `workers` fixed workers of Presto 0.293, attaching `catalogs`.
fn cluster(workers: u32, catalogs: &[&str]) -> ClusterSpec {
    cluster_spec(json!({
        "presto_version": "0.293",
        "workers": {"count": workers},
        "catalogs": catalogs,
    }))
}

/// A catalog spec from its API JSON; it must validate.
fn catalog_spec(v: Value) -> CatalogSpec {
    let spec: CatalogSpec =
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("catalog spec {v}: {e}"));
    spec.validate()
        .unwrap_or_else(|e| panic!("catalog spec {v}: {e}"));
    spec
}

/// A Hive catalog on AWS Glue in `region`.
fn glue_catalog(region: &str) -> CatalogSpec {
    catalog_spec(json!({
        "connector": "hive",
        "properties": {"hive.metastore": "glue", "hive.metastore.glue.region": region},
    }))
}

/// Settings from pairs.
fn settings(pairs: &[(&str, &str)]) -> Settings {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect::<BTreeMap<_, _>>()
}

/// The compute plane as stored now.
async fn cp_now(store: &dyn Store, id: &str) -> ComputePlane {
    store
        .get_compute_plane(id)
        .await
        .expect("get compute plane")
        .unwrap_or_else(|| panic!("compute plane {id} is gone"))
}

/// The compute plane's stored generation.
async fn generation(store: &dyn Store, id: &str) -> i64 {
    cp_now(store, id).await.generation
}

/// Panics unless `r` is `Err(StoreError::NotFound(_))`.
#[track_caller]
fn assert_not_found<T: Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("{what}: expected StoreError::NotFound, got {other:?}"),
    }
}

/// Panics unless `r` is `Err(StoreError::Conflict(_))`.
#[track_caller]
fn assert_conflict<T: Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected StoreError::Conflict, got {other:?}"),
    }
}
