//! SQLite implementation of the desired-state part of the store.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::sqlite::SqliteStore;
use super::{
    CatalogRow, ClusterRow, DesiredStateConflict, DesiredStateStore, StoreError, StoredDesiredState,
};

type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

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

fn cluster_row(r: &SqliteRow) -> Result<ClusterRow, sqlx::Error> {
    Ok(ClusterRow {
        name: r.try_get("name")?,
        spec: r.try_get("spec")?,
        generation: r.try_get("generation")?,
        deleted_generation: r.try_get("deleted_generation")?,
        status: r.try_get("status")?,
        observed_generation: r.try_get("observed_generation")?,
    })
}

fn catalog_row(r: &SqliteRow) -> Result<CatalogRow, sqlx::Error> {
    Ok(CatalogRow {
        name: r.try_get("name")?,
        spec: r.try_get("spec")?,
        generation: r.try_get("generation")?,
    })
}

#[async_trait]
impl DesiredStateStore for SqliteStore {
    async fn put_cluster(
        &self,
        cp: &str,
        name: &str,
        spec: &str,
        catalogs: &[String],
        now: i64,
    ) -> Result<Result<i64, DesiredStateConflict>, StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        for (i, c) in catalogs.iter().enumerate() {
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
        let generation = bump(&mut tx, cp).await?;
        sqlx::query(
            "INSERT INTO clusters (compute_plane_id, name, spec, generation, updated_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (compute_plane_id, name) DO UPDATE SET spec = excluded.spec, \
             generation = excluded.generation, deleted_generation = NULL, updated_at = excluded.updated_at",
        )
        .bind(cp)
        .bind(name)
        .bind(spec)
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
        let generation = bump(&mut tx, cp).await?;
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
        Ok(row.as_ref().map(cluster_row).transpose()?)
    }

    async fn list_clusters(&self, cp: &str) -> Result<Vec<ClusterRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM clusters WHERE compute_plane_id = ? ORDER BY name")
            .bind(cp)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(cluster_row).collect::<Result<_, _>>()?)
    }

    async fn put_catalog(
        &self,
        cp: &str,
        name: &str,
        spec: &str,
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
        .bind(spec)
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
        let generation = bump(&mut tx, cp).await?;
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
        Ok(row.as_ref().map(catalog_row).transpose()?)
    }

    async fn list_catalogs(&self, cp: &str) -> Result<Vec<CatalogRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM catalogs WHERE compute_plane_id = ? ORDER BY name")
            .bind(cp)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(catalog_row).collect::<Result<_, _>>()?)
    }

    async fn desired_state(&self, cp: &str) -> Result<StoredDesiredState, StoreError> {
        // One read transaction, so generation and specs belong together.
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT p.generation, p.settings, t.settings AS tenant_settings \
             FROM compute_planes p JOIN tenants t ON t.id = p.tenant_id WHERE p.id = ?",
        )
        .bind(cp)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("compute plane"))?;
        let generation: i64 = row.try_get("generation")?;
        let settings: String = row.try_get("settings")?;
        let tenant_settings: String = row.try_get("tenant_settings")?;
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
            clusters,
            catalogs,
            settings,
            tenant_settings,
        })
    }

    async fn put_tenant_settings(&self, tenant: &str, settings: &str) -> Result<u64, StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        let found = sqlx::query("UPDATE tenants SET settings = ? WHERE id = ?")
            .bind(settings)
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
        let mut out: std::collections::BTreeMap<String, StoredDesiredState> =
            sqlx::query("SELECT id, generation, settings FROM compute_planes WHERE tenant_id = ?")
                .bind(tenant)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get("id")?,
                        StoredDesiredState {
                            generation: r.try_get("generation")?,
                            clusters: vec![],
                            catalogs: vec![],
                            settings: r.try_get("settings")?,
                            tenant_settings: tenant_settings.clone(),
                        },
                    ))
                })
                .collect::<Result<_, sqlx::Error>>()?;
        let clusters = sqlx::query(
            "SELECT c.compute_plane_id, c.name, c.spec FROM clusters c \
             JOIN compute_planes p ON p.id = c.compute_plane_id \
             WHERE p.tenant_id = ? AND c.deleted_generation IS NULL ORDER BY c.name",
        );
        for (cp, spec) in named_specs(&mut tx, clusters, tenant).await? {
            if let Some(d) = out.get_mut(&cp) {
                d.clusters.push(spec);
            }
        }
        let catalogs = sqlx::query(
            "SELECT c.compute_plane_id, c.name, c.spec FROM catalogs c \
             JOIN compute_planes p ON p.id = c.compute_plane_id \
             WHERE p.tenant_id = ? ORDER BY c.name",
        );
        for (cp, spec) in named_specs(&mut tx, catalogs, tenant).await? {
            if let Some(d) = out.get_mut(&cp) {
                d.catalogs.push(spec);
            }
        }
        tx.commit().await?;
        Ok(out.into_iter().collect())
    }

    async fn record_applied(
        &self,
        cp: &str,
        generation: i64,
        conditions: &str,
    ) -> Result<(), StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        record_applied(&mut tx, cp, generation, conditions).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_settings(&self, cp: &str, settings: &str) -> Result<i64, StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        let generation = bump(&mut tx, cp).await?;
        sqlx::query("UPDATE compute_planes SET settings = ? WHERE id = ?")
            .bind(settings)
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
        status: &str,
        observed_generation: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE clusters SET status = ?, observed_generation = MAX(observed_generation, ?) \
             WHERE compute_plane_id = ? AND name = ?",
        )
        .bind(status)
        .bind(observed_generation)
        .bind(cp)
        .bind(name)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }
}

/// The agent applied `generation` (capped at the stored one: only what it can have seen);
/// deletions up to it are done.
pub(super) async fn record_applied(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    cp: &str,
    generation: i64,
    conditions: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE compute_planes SET applied_generation = MAX(applied_generation, MIN(?, generation)), \
         applied_conditions = ? WHERE id = ?",
    )
    .bind(generation)
    .bind(conditions)
    .bind(cp)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers that read first (a cluster PUT checks its catalogs) and status reports from
    /// the agent run at the same time in production; none may fail with SQLITE_BUSY.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_do_not_fail() {
        let (_dir, store, cp) = super::super::sqlite::test_store().await;
        let store = std::sync::Arc::new(store);
        store
            .put_catalog(&cp.id, "lake", "{}", 0)
            .await
            .expect("catalog");
        let mut tasks = Vec::new();
        for w in 0..4 {
            let store = store.clone();
            let cp = cp.id.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    let name = format!("c{w}");
                    store
                        .put_cluster(&cp, &name, "{}", &["lake".to_owned()], i)
                        .await?
                        .ok();
                    store.record_cluster_status(&cp, &name, "{}", i).await?;
                    store.record_applied(&cp, i, "[]").await?;
                }
                Ok::<(), StoreError>(())
            }));
        }
        for t in tasks {
            t.await.expect("join").expect("no writer failed");
        }
        let state = store.desired_state(&cp.id).await.expect("state");
        assert_eq!(state.generation, 1 + 4 * 25);
        assert_eq!(state.clusters.len(), 4);
    }
}
