//! PostgreSQL: desired state and the agent's reports about it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tether_shared::spec::{CatalogSpec, ClusterSpec, PrestoAccess};
use tether_shared::status::{ClusterStatus, Condition};

use super::{PgStore, Tx, bump};
use crate::store::rows;
use crate::store::{
    CatalogRow, ClusterRow, DesiredStateConflict, DesiredStateStore, Settings, StoreError,
    StoredDesiredState, from_json, to_json,
};

const CLUSTER_COLUMNS: &str = "name, spec::text AS spec, generation, deleted_generation, \
     status::text AS status, observed_generation";
const CATALOG_COLUMNS: &str = "name, spec::text AS spec, generation";

/// Rows `(owner, name, spec)` as specs by name, grouped by owner.
fn specs_by_owner<T: serde::de::DeserializeOwned>(
    what: &'static str,
    rows: Vec<(String, String, String)>,
) -> Result<BTreeMap<String, BTreeMap<String, T>>, StoreError> {
    let mut out: BTreeMap<String, BTreeMap<String, T>> = BTreeMap::new();
    for (owner, name, json) in rows {
        let spec = from_json(what, &name, &json)?;
        out.entry(owner).or_default().insert(name, spec);
    }
    Ok(out)
}

/// The live clusters and the catalogs of the compute planes `cps`, by compute plane.
type Specs = (
    BTreeMap<String, BTreeMap<String, ClusterSpec>>,
    BTreeMap<String, BTreeMap<String, CatalogSpec>>,
);

async fn specs_of(tx: &mut Tx<'_>, cps: &[String]) -> Result<Specs, StoreError> {
    let clusters: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT compute_plane_id, name, spec::text FROM clusters \
         WHERE compute_plane_id = ANY($1) AND deleted_generation IS NULL",
    )
    .bind(cps)
    .fetch_all(&mut **tx)
    .await?;
    let catalogs: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT compute_plane_id, name, spec::text FROM catalogs WHERE compute_plane_id = ANY($1)",
    )
    .bind(cps)
    .fetch_all(&mut **tx)
    .await?;
    Ok((
        specs_by_owner("cluster", clusters)?,
        specs_by_owner("catalog", catalogs)?,
    ))
}

#[async_trait]
impl DesiredStateStore for PgStore {
    async fn put_cluster(
        &self,
        cp: &str,
        name: &str,
        spec: &ClusterSpec,
        now: i64,
    ) -> Result<Result<i64, DesiredStateConflict>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Bump first: the row lock keeps a concurrent catalog DELETE out until the commit.
        let generation = bump(&mut tx, cp).await?;
        let known: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM catalogs WHERE compute_plane_id = $1 AND name = ANY($2)",
        )
        .bind(cp)
        .bind(&spec.catalogs)
        .fetch_all(&mut *tx)
        .await?;
        if let Some((i, c)) = spec
            .catalogs
            .iter()
            .enumerate()
            .find(|(_, c)| !known.iter().any(|(k,)| k == *c))
        {
            tx.rollback().await?;
            return Ok(Err(DesiredStateConflict::UnknownCatalog(i, c.clone())));
        }
        sqlx::query(
            "INSERT INTO clusters (compute_plane_id, name, spec, generation, updated_at) VALUES ($1, $2, $3::jsonb, $4, $5) \
             ON CONFLICT (compute_plane_id, name) DO UPDATE SET spec = excluded.spec, \
             generation = excluded.generation, deleted_generation = NULL, updated_at = excluded.updated_at",
        )
        .bind(cp)
        .bind(name)
        .bind(to_json(spec))
        .bind(generation)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(generation))
    }

    async fn delete_cluster(
        &self,
        cp: &str,
        name: &str,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let generation = bump(&mut tx, cp).await?;
        let found = sqlx::query(
            "UPDATE clusters SET deleted_generation = $1, generation = $1, updated_at = $2 \
             WHERE compute_plane_id = $3 AND name = $4 AND deleted_generation IS NULL",
        )
        .bind(generation)
        .bind(now)
        .bind(cp)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if found.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(generation))
    }

    async fn get_cluster(&self, cp: &str, name: &str) -> Result<Option<ClusterRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CLUSTER_COLUMNS} FROM clusters WHERE compute_plane_id = $1 AND name = $2"
        )))
        .bind(cp)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::cluster).transpose()
    }

    async fn list_clusters(&self, cp: &str) -> Result<Vec<ClusterRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CLUSTER_COLUMNS} FROM clusters WHERE compute_plane_id = $1 ORDER BY name COLLATE \"C\""
        )))
        .bind(cp)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::cluster).collect()
    }

    async fn put_catalog(
        &self,
        cp: &str,
        name: &str,
        spec: &CatalogSpec,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let generation = bump(&mut tx, cp).await?;
        sqlx::query(
            "INSERT INTO catalogs (compute_plane_id, name, spec, generation, updated_at) VALUES ($1, $2, $3::jsonb, $4, $5) \
             ON CONFLICT (compute_plane_id, name) DO UPDATE SET spec = excluded.spec, \
             generation = excluded.generation, updated_at = excluded.updated_at",
        )
        .bind(cp)
        .bind(name)
        .bind(to_json(spec))
        .bind(generation)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(generation)
    }

    async fn delete_catalog(
        &self,
        cp: &str,
        name: &str,
    ) -> Result<Result<Option<i64>, DesiredStateConflict>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Bump first: the row lock keeps a concurrent cluster PUT out until the commit.
        let generation = bump(&mut tx, cp).await?;
        let users: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM clusters WHERE compute_plane_id = $1 AND deleted_generation IS NULL \
             AND spec -> 'catalogs' ? $2 ORDER BY name COLLATE \"C\"",
        )
        .bind(cp)
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        if !users.is_empty() {
            tx.rollback().await?;
            return Ok(Err(DesiredStateConflict::CatalogInUse(
                users.into_iter().map(|(n,)| n).collect(),
            )));
        }
        let deleted = sqlx::query("DELETE FROM catalogs WHERE compute_plane_id = $1 AND name = $2")
            .bind(cp)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Ok(None));
        }
        tx.commit().await?;
        Ok(Ok(Some(generation)))
    }

    async fn get_catalog(&self, cp: &str, name: &str) -> Result<Option<CatalogRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CATALOG_COLUMNS} FROM catalogs WHERE compute_plane_id = $1 AND name = $2"
        )))
        .bind(cp)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::catalog).transpose()
    }

    async fn list_catalogs(&self, cp: &str) -> Result<Vec<CatalogRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CATALOG_COLUMNS} FROM catalogs WHERE compute_plane_id = $1 ORDER BY name COLLATE \"C\""
        )))
        .bind(cp)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::catalog).collect()
    }

    async fn desired_state(&self, cp: &str) -> Result<StoredDesiredState, StoreError> {
        // One snapshot, so generation and specs belong together.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let row: Option<(i64, String, String, Option<String>)> = sqlx::query_as(
            "SELECT p.generation, p.settings::text, t.settings::text, p.presto_access::text \
             FROM compute_planes p JOIN tenants t ON t.id = p.tenant_id WHERE p.id = $1",
        )
        .bind(cp)
        .fetch_optional(&mut *tx)
        .await?;
        let (generation, settings, tenant_settings, presto_access) =
            row.ok_or(StoreError::NotFound("compute plane"))?;
        let (mut clusters, mut catalogs) = specs_of(&mut tx, &[cp.to_owned()]).await?;
        tx.commit().await?;
        Ok(StoredDesiredState {
            generation,
            clusters: clusters.remove(cp).unwrap_or_default(),
            catalogs: catalogs.remove(cp).unwrap_or_default(),
            settings: from_json("settings", cp, &settings)?,
            tenant_settings: from_json("tenant settings", cp, &tenant_settings)?,
            presto_access: presto_access
                .map(|a| from_json("presto access", cp, &a))
                .transpose()?,
        })
    }

    async fn record_applied(
        &self,
        cp: &str,
        generation: i64,
        conditions: &[Condition],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        record_applied(&mut tx, cp, generation, conditions).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_settings(&self, cp: &str, settings: &Settings) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let generation = bump(&mut tx, cp).await?;
        sqlx::query("UPDATE compute_planes SET settings = $1::jsonb WHERE id = $2")
            .bind(to_json(settings))
            .bind(cp)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(generation)
    }

    async fn put_presto_access(
        &self,
        cp: &str,
        access: Option<&PrestoAccess>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let generation = bump(&mut tx, cp).await?;
        sqlx::query("UPDATE compute_planes SET presto_access = $1::jsonb WHERE id = $2")
            .bind(access.map(to_json))
            .bind(cp)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(generation)
    }

    async fn put_tenant_settings(
        &self,
        tenant: &str,
        settings: &Settings,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query("UPDATE tenants SET settings = $1::jsonb WHERE id = $2")
            .bind(to_json(settings))
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::NotFound("tenant"));
        }
        // In id order, like every transaction that locks many compute planes.
        let bumped = sqlx::query(
            "UPDATE compute_planes SET generation = generation + 1 WHERE id IN \
             (SELECT id FROM compute_planes WHERE tenant_id = $1 ORDER BY id FOR UPDATE)",
        )
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(bumped.rows_affected())
    }

    async fn tenant_desired_states(
        &self,
        tenant: &str,
    ) -> Result<Vec<(String, StoredDesiredState)>, StoreError> {
        self.tenant_states(tenant, None).await
    }

    async fn tenant_desired_states_of(
        &self,
        tenant: &str,
        cps: &[String],
    ) -> Result<Vec<(String, StoredDesiredState)>, StoreError> {
        self.tenant_states(tenant, Some(cps)).await
    }

    async fn record_cluster_status(
        &self,
        cp: &str,
        name: &str,
        status: &ClusterStatus,
        observed_generation: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE clusters SET status = $1::jsonb, observed_generation = GREATEST(observed_generation, $2) \
             WHERE compute_plane_id = $3 AND name = $4",
        )
        .bind(to_json(status))
        .bind(observed_generation)
        .bind(cp)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The agent applied `generation` (capped at the stored one: only what it can have seen);
/// deletions up to it are done.
pub(super) async fn record_applied(
    tx: &mut Tx<'_>,
    cp: &str,
    generation: i64,
    conditions: &[Condition],
) -> Result<(), StoreError> {
    let applied: Option<(i64,)> = sqlx::query_as(
        "UPDATE compute_planes SET applied_generation = GREATEST(applied_generation, LEAST($1, generation)), \
         applied_conditions = CASE WHEN $1 >= applied_generation THEN $2::jsonb ELSE applied_conditions END \
         WHERE id = $3 RETURNING applied_generation",
    )
    .bind(generation)
    .bind(to_json(&conditions))
    .bind(cp)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some((applied,)) = applied {
        sqlx::query(
            "DELETE FROM clusters WHERE compute_plane_id = $1 AND deleted_generation <= $2",
        )
        .bind(cp)
        .bind(applied)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl PgStore {
    /// The desired states of the tenant's compute planes (only those of `only`, if given),
    /// in one snapshot, one query per table.
    async fn tenant_states(
        &self,
        tenant: &str,
        only: Option<&[String]>,
    ) -> Result<Vec<(String, StoredDesiredState)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let tenant_settings: Option<(String,)> =
            sqlx::query_as("SELECT settings::text FROM tenants WHERE id = $1")
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
        let (tenant_settings,) = tenant_settings.ok_or(StoreError::NotFound("tenant"))?;
        let tenant_settings: Settings = from_json("tenant settings", tenant, &tenant_settings)?;
        let cps: Vec<(String, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT id, generation, settings::text, presto_access::text FROM compute_planes WHERE tenant_id = $1 \
             AND ($2::text[] IS NULL OR id = ANY($2)) ORDER BY id",
        )
        .bind(tenant)
        .bind(only)
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<String> = cps.iter().map(|(id, ..)| id.clone()).collect();
        let (mut clusters, mut catalogs) = specs_of(&mut tx, &ids).await?;
        tx.commit().await?;
        cps.into_iter()
            .map(|(id, generation, settings, presto_access)| {
                let state = StoredDesiredState {
                    generation,
                    clusters: clusters.remove(&id).unwrap_or_default(),
                    catalogs: catalogs.remove(&id).unwrap_or_default(),
                    settings: from_json("settings", &id, &settings)?,
                    tenant_settings: tenant_settings.clone(),
                    presto_access: presto_access
                        .map(|a| from_json("presto access", &id, &a))
                        .transpose()?,
                };
                Ok((id, state))
            })
            .collect()
    }
}
