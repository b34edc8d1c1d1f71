//! SQLite: compute planes, enrollment tokens and agent certificates.

use async_trait::async_trait;
use sqlx::Row;

use super::{SqliteStore, Tx};
use crate::store::rows;
use crate::store::{
    ComputePlane, ComputePlaneStore, NewCertificate, RedeemError, StoreError, conflict_or,
    missing_or, new_id,
};

#[async_trait]
impl ComputePlaneStore for SqliteStore {
    async fn create_compute_plane(
        &self,
        tenant_id: &str,
        name: &str,
        region: &str,
        now: i64,
    ) -> Result<ComputePlane, StoreError> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO compute_planes (id, tenant_id, name, region, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(name)
        .bind(region)
        .bind(now)
        .execute(&mut *self.writer().await?)
        .await
        .map_err(|e| match missing_or(e, "tenant") {
            StoreError::Database(e) => conflict_or(e, format!("compute plane {name:?} already exists")),
            other => other,
        })?;
        self.get_compute_plane(&id)
            .await?
            .ok_or(StoreError::NotFound("compute plane"))
    }

    async fn list_compute_planes(&self, tenant_id: &str) -> Result<Vec<ComputePlane>, StoreError> {
        let rows = sqlx::query("SELECT * FROM compute_planes WHERE tenant_id = ? ORDER BY name")
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::compute_plane).collect()
    }

    async fn get_compute_plane(&self, id: &str) -> Result<Option<ComputePlane>, StoreError> {
        let row = sqlx::query("SELECT * FROM compute_planes WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::compute_plane).transpose()
    }

    async fn create_enrollment_token(
        &self,
        compute_plane_id: &str,
        token_hash: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<String, StoreError> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, compute_plane_id, token_hash, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(compute_plane_id)
        .bind(token_hash)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *self.writer().await?)
        .await
        .map_err(|e| match missing_or(e, "compute plane") {
            StoreError::Database(e) => conflict_or(e, "this enrollment token exists".to_owned()),
            other => other,
        })?;
        Ok(id)
    }

    async fn peek_enrollment_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Result<ComputePlane, RedeemError>, StoreError> {
        let row = sqlx::query(
            "SELECT compute_plane_id, expires_at, used_at FROM enrollment_tokens WHERE token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Err(RedeemError::Unknown));
        };
        if row.try_get::<Option<i64>, _>("used_at")?.is_some() {
            return Ok(Err(RedeemError::Used));
        }
        if row.try_get::<i64, _>("expires_at")? <= now {
            return Ok(Err(RedeemError::Expired));
        }
        let cp_id: String = row.try_get("compute_plane_id")?;
        match self.get_compute_plane(&cp_id).await? {
            Some(cp) => Ok(Ok(cp)),
            None => Ok(Err(RedeemError::Unknown)),
        }
    }

    async fn redeem_enrollment_token(
        &self,
        token_hash: &str,
        cert: &NewCertificate,
        now: i64,
    ) -> Result<Result<(), RedeemError>, StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        let row = sqlx::query(
            "UPDATE enrollment_tokens SET used_at = ? \
             WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? \
             RETURNING compute_plane_id",
        )
        .bind(now)
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            // Lost a race, or the token changed state since it was peeked: say why.
            return match self.peek_enrollment_token(token_hash, now).await? {
                Err(e) => Ok(Err(e)),
                Ok(_) => Ok(Err(RedeemError::Used)),
            };
        };
        let cp_id: String = row.try_get("compute_plane_id")?;
        insert_certificate(&mut tx, &cp_id, cert).await?;
        sqlx::query("UPDATE compute_planes SET agent_revoked = 0 WHERE id = ?")
            .bind(&cp_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    async fn record_certificate(
        &self,
        compute_plane_id: &str,
        cert: &NewCertificate,
    ) -> Result<(), StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        insert_certificate(&mut tx, compute_plane_id, cert).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn certificate_allowed(
        &self,
        compute_plane_id: &str,
        serial: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT c.revoked AS cert_revoked, p.agent_revoked AS cp_revoked \
             FROM agent_certificates c JOIN compute_planes p ON p.id = c.compute_plane_id \
             WHERE c.serial = ? AND c.compute_plane_id = ?",
        )
        .bind(serial)
        .bind(compute_plane_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(false) };
        Ok(
            row.try_get::<i64, _>("cert_revoked")? == 0
                && row.try_get::<i64, _>("cp_revoked")? == 0,
        )
    }

    async fn revoke_agent(&self, compute_plane_id: &str) -> Result<(), StoreError> {
        let (_turn, mut tx) = self.write_tx().await?;
        sqlx::query("UPDATE agent_certificates SET revoked = 1 WHERE compute_plane_id = ?")
            .bind(compute_plane_id)
            .execute(&mut *tx)
            .await?;
        let found = sqlx::query(
            "UPDATE compute_planes SET agent_revoked = 1, agent_connected = 0 WHERE id = ?",
        )
        .bind(compute_plane_id)
        .execute(&mut *tx)
        .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::NotFound("compute plane"));
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn insert_certificate(
    tx: &mut Tx<'_>,
    compute_plane_id: &str,
    cert: &NewCertificate,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO agent_certificates (serial, compute_plane_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
    )
    .bind(&cert.serial)
    .bind(compute_plane_id)
    .bind(cert.issued_at)
    .bind(cert.expires_at)
    .execute(&mut **tx)
    .await
    .map_err(|e| match missing_or(e, "compute plane") {
        StoreError::Database(e) => conflict_or(e, format!("certificate {} already recorded", cert.serial)),
        other => other,
    })?;
    sqlx::query(
        "UPDATE compute_planes SET agent_cert_serial = ?, agent_cert_expires_at = ? WHERE id = ?",
    )
    .bind(&cert.serial)
    .bind(cert.expires_at)
    .bind(compute_plane_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
