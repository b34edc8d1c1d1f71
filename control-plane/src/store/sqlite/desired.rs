//! SQLite: desired state and the agent's reports about it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::Row;
use tether_shared::spec::{CatalogSpec, ClusterSpec, PrestoAccess};
use tether_shared::status::{ClusterStatus, Condition};

use super::{SqliteStore, Tx};
use crate::store::rows;
use crate::store::{
    CatalogRow, ClusterRow, DesiredStateConflict, DesiredStateStore, Settings, StoreError,
    StoredDesiredState, from_json, to_json,
};

/// Bumps and returns the compute plane's generation inside `tx`.
async fn bump(tx: &mut Tx<'_>, cp: &str) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "UPDATE compute_planes SET generation = generation + 1 WHERE id = ? RETURNING generation",
    )
    .bind(cp)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("compute plane"))?;
    Ok(row.try_get("generation")?)
}

/// Rows `(compute_plane_id, name, spec)` of `query` bound to `tenant`, as
/// `(compute plane, (name, spec))`.
async fn named_specs<'q>(
    tx: &mut Tx<'_>,
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    tenant: &'q str,
) -> Result<Vec<(String, (String, String))>, StoreError> {
    query
        .bind(tenant)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("compute_plane_id")?,
                (r.try_get("name")?, r.try_get("spec")?),
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// `(name, spec)` rows as specs by name.
fn specs<T: serde::de::DeserializeOwned>(
    what: &'static str,
    rows: Vec<(String, String)>,
) -> Result<BTreeMap<String, T>, StoreError> {
    rows.into_iter()
        .map(|(name, json)| Ok((name.clone(), from_json(what, &name, &json)?)))
        .collect()
}

#[async_trait]
impl DesiredStateStore for SqliteStore {
    async fn put_cluster(
        &self,
        cp: &str,
        name: &str,
        spec: &ClusterSpec,
        now: i64,
    ) -> Result<Result<i64, DesiredStateConflict>, StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        // Bump first: a missing compute plane is NotFound before any catalog check.
        let generation = bump(&mut tx, cp).await?;
        for (i, c) in spec.catalogs.iter().enumerate() {
            let found =
                sqlx::query("SELECT 1 FROM catalogs WHERE compute_plane_id = ? AND name = ?")
                    .bind(cp)
                    .bind(c)
                    .fetch_optional(&mut *tx)
                    .await?;
            if found.is_none() {
                tx.rollback().await?;
                return Ok(Err(DesiredStateConflict::UnknownCatalog(i, c.clone())));
            }
        }
        sqlx::query(
            "INSERT INTO clusters (compute_plane_id, name, spec, generation, updated_at) VALUES (?, ?, ?, ?, ?) \
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
        let (_turn, mut tx) = self.write_tx().await?;
        let generation = bump(&mut tx, cp).await?;
        let live = sqlx::query(
            "SELECT 1 FROM clusters WHERE compute_plane_id = ? AND name = ? AND deleted_generation IS NULL",
        )
        .bind(cp)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if live.is_none() {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(
            "UPDATE clusters SET deleted_generation = ?, generation = ?, updated_at = ? \
             WHERE compute_plane_id = ? AND name = ?",
        )
        .bind(generation)
        .bind(generation)
        .bind(now)
        .bind(cp)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(generation))
    }

    async fn get_cluster(&self, cp: &str, name: &str) -> Result<Option<ClusterRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM clusters WHERE compute_plane_id = ? AND name = ?")
            .bind(cp)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::cluster).transpose()
    }

    async fn list_clusters(&self, cp: &str) -> Result<Vec<ClusterRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM clusters WHERE compute_plane_id = ? ORDER BY name")
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
        let (_turn, mut tx) = self.write_tx().await?;
        let generation = bump(&mut tx, cp).await?;
        sqlx::query(
            "INSERT INTO catalogs (compute_plane_id, name, spec, generation, updated_at) VALUES (?, ?, ?, ?, ?) \
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
        let (_turn, mut tx) = self.write_tx().await?;
        let generation = bump(&mut tx, cp).await?;
        let exists = sqlx::query("SELECT 1 FROM catalogs WHERE compute_plane_id = ? AND name = ?")
            .bind(cp)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            tx.rollback().await?;
            return Ok(Ok(None));
        }
        let rows = sqlx::query(
            "SELECT c.name AS name FROM clusters c, json_each(c.spec, '$.catalogs') j \
             WHERE c.compute_plane_id = ? AND c.deleted_generation IS NULL AND j.value = ? ORDER BY c.name",
        )
        .bind(cp)
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        if !rows.is_empty() {
            tx.rollback().await?;
            let users = rows
                .iter()
                .map(|r| r.try_get("name"))
                .collect::<Result<Vec<String>, _>>()?;
            return Ok(Err(DesiredStateConflict::CatalogInUse(users)));
        }
        sqlx::query("DELETE FROM catalogs WHERE compute_plane_id = ? AND name = ?")
            .bind(cp)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(Some(generation)))
    }

    async fn get_catalog(&self, cp: &str, name: &str) -> Result<Option<CatalogRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM catalogs WHERE compute_plane_id = ? AND name = ?")
            .bind(cp)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::catalog).transpose()
    }

    async fn list_catalogs(&self, cp: &str) -> Result<Vec<CatalogRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM catalogs WHERE compute_plane_id = ? ORDER BY name")
            .bind(cp)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::catalog).collect()
    }

    async fn desired_state(&self, cp: &str) -> Result<StoredDesiredState, StoreError> {
        // One read transaction, so generation and specs belong together.
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT p.generation, p.settings, p.presto_access, t.settings AS tenant_settings \
             FROM compute_planes p JOIN tenants t ON t.id = p.tenant_id WHERE p.id = ?",
        )
        .bind(cp)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("compute plane"))?;
        let generation: i64 = row.try_get("generation")?;
        let settings: String = row.try_get("settings")?;
        let tenant_settings: String = row.try_get("tenant_settings")?;
        let presto_access: Option<String> = row.try_get("presto_access")?;
        let clusters = sqlx::query(
            "SELECT name, spec FROM clusters WHERE compute_plane_id = ? AND deleted_generation IS NULL ORDER BY name",
        )
        .bind(cp)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("name")?, r.try_get("spec")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let catalogs =
            sqlx::query("SELECT name, spec FROM catalogs WHERE compute_plane_id = ? ORDER BY name")
                .bind(cp)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("name")?, r.try_get("spec")?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
        tx.commit().await?;
        Ok(StoredDesiredState {
            generation,
            clusters: specs("cluster", clusters)?,
            catalogs: specs("catalog", catalogs)?,
            settings: from_json("settings", cp, &settings)?,
            tenant_settings: from_json("tenant settings", cp, &tenant_settings)?,
            presto_access: presto_access
                .map(|a| from_json("presto access", cp, &a))
                .transpose()?,
        })
    }

    async fn put_tenant_settings(
        &self,
        tenant: &str,
        settings: &Settings,
    ) -> Result<u64, StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        let found = sqlx::query("UPDATE tenants SET settings = ? WHERE id = ?")
            .bind(to_json(settings))
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::NotFound("tenant"));
        }
        let bumped = sqlx::query(
            "UPDATE compute_planes SET generation = generation + 1 WHERE tenant_id = ?",
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
        let mut tx = self.pool.begin().await?;
        let tenant_settings: String = sqlx::query("SELECT settings FROM tenants WHERE id = ?")
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("tenant"))?
            .try_get("settings")?;
        let tenant_settings: Settings = from_json("tenant settings", tenant, &tenant_settings)?;
        let mut out: BTreeMap<String, StoredDesiredState> =
            sqlx::query(
                "SELECT id, generation, settings, presto_access FROM compute_planes WHERE tenant_id = ?",
            )
                .bind(tenant)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| {
                    let id: String = r.try_get("id")?;
                    let settings: String = r.try_get("settings")?;
                    let presto_access: Option<String> = r.try_get("presto_access")?;
                    Ok((
                        id.clone(),
                        StoredDesiredState {
                            generation: r.try_get("generation")?,
                            clusters: BTreeMap::new(),
                            catalogs: BTreeMap::new(),
                            settings: from_json("settings", &id, &settings)?,
                            tenant_settings: tenant_settings.clone(),
                            presto_access: presto_access
                                .map(|a| from_json("presto access", &id, &a))
                                .transpose()?,
                        },
                    ))
                })
                .collect::<Result<_, StoreError>>()?;
        let clusters = sqlx::query(
            "SELECT c.compute_plane_id, c.name, c.spec FROM clusters c \
             JOIN compute_planes p ON p.id = c.compute_plane_id \
             WHERE p.tenant_id = ? AND c.deleted_generation IS NULL ORDER BY c.name",
        );
        for (cp, (name, spec)) in named_specs(&mut tx, clusters, tenant).await? {
            if let Some(d) = out.get_mut(&cp) {
                let spec = from_json("cluster", &name, &spec)?;
                d.clusters.insert(name, spec);
            }
        }
        let catalogs = sqlx::query(
            "SELECT c.compute_plane_id, c.name, c.spec FROM catalogs c \
             JOIN compute_planes p ON p.id = c.compute_plane_id \
             WHERE p.tenant_id = ? ORDER BY c.name",
        );
        for (cp, (name, spec)) in named_specs(&mut tx, catalogs, tenant).await? {
            if let Some(d) = out.get_mut(&cp) {
                let spec = from_json("catalog", &name, &spec)?;
                d.catalogs.insert(name, spec);
            }
        }
        tx.commit().await?;
        Ok(out.into_iter().collect())
    }

    async fn record_applied(
        &self,
        cp: &str,
        generation: i64,
        conditions: &[Condition],
    ) -> Result<(), StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        record_applied(&mut tx, cp, None, generation, conditions).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_settings(&self, cp: &str, settings: &Settings) -> Result<i64, StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        let generation = bump(&mut tx, cp).await?;
        sqlx::query("UPDATE compute_planes SET settings = ? WHERE id = ?")
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
        let (_turn, mut tx) = self.write_tx().await?;
        let generation = bump(&mut tx, cp).await?;
        sqlx::query("UPDATE compute_planes SET presto_access = ? WHERE id = ?")
            .bind(access.map(to_json))
            .bind(cp)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(generation)
    }

    async fn record_cluster_status(
        &self,
        cp: &str,
        name: &str,
        status: &ClusterStatus,
        observed_generation: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE clusters SET status = ?, observed_generation = MAX(observed_generation, ?) \
             WHERE compute_plane_id = ? AND name = ?",
        )
        .bind(to_json(status))
        .bind(observed_generation)
        .bind(cp)
        .bind(name)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }
}

/// The agent applied `generation` (capped at the stored one: only what it can have seen);
/// deletions up to it are done. With `session`, only while that session is current.
pub(super) async fn record_applied(
    tx: &mut Tx<'_>,
    cp: &str,
    session: Option<&str>,
    generation: i64,
    conditions: &[Condition],
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE compute_planes SET applied_generation = MAX(applied_generation, MIN(?, generation)), \
         applied_conditions = CASE WHEN ? >= applied_generation THEN ? ELSE applied_conditions END \
         WHERE id = ? AND (? IS NULL OR agent_session_id = ?)",
    )
    .bind(generation)
    .bind(generation)
    .bind(to_json(&conditions))
    .bind(cp)
    .bind(session)
    .bind(session)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "DELETE FROM clusters WHERE compute_plane_id = ? AND deleted_generation <= \
         (SELECT applied_generation FROM compute_planes WHERE id = ?)",
    )
    .bind(cp)
    .bind(cp)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
