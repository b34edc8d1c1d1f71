//! PostgreSQL: compute planes, enrollment tokens and agent certificates.

use async_trait::async_trait;
use sqlx::Row;

use super::{PgStore, Tx};
use crate::store::rows;
use crate::store::{
    ComputePlane, ComputePlaneStore, NewCertificate, RedeemError, StoreError, conflict_or,
    missing_or, new_id,
};

/// The columns [`compute_plane`] reads.
pub(super) const CP_COLUMNS: &str = "id, tenant_id, name, region, created_at, agent_connected, \
     agent_session_id, agent_connected_since, agent_version, agent_last_heartbeat, \
     agent_remote_addr, agent_cert_serial, agent_cert_expires_at, agent_revoked, agent_replica, generation, \
     applied_generation, applied_conditions::text AS applied_conditions, telemetry_dropped, \
     telemetry_dropped_events, telemetry_dropped_metrics, telemetry_dropped_query_records";

#[async_trait]
impl ComputePlaneStore for PgStore {
    async fn create_compute_plane(
        &self,
        tenant_id: &str,
        name: &str,
        region: &str,
        now: i64,
    ) -> Result<ComputePlane, StoreError> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO compute_planes (id, tenant_id, name, region, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(name)
        .bind(region)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| match missing_or(e, "tenant") {
            StoreError::Database(e) => {
                conflict_or(e, format!("compute plane {name:?} already exists"))
            }
            other => other,
        })?;
        self.get_compute_plane(&id)
            .await?
            .ok_or(StoreError::NotFound("compute plane"))
    }

    async fn list_compute_planes(&self, tenant_id: &str) -> Result<Vec<ComputePlane>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CP_COLUMNS} FROM compute_planes WHERE tenant_id = $1 ORDER BY name COLLATE \"C\""
        )))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::compute_plane).collect()
    }

    async fn get_compute_plane(&self, id: &str) -> Result<Option<ComputePlane>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CP_COLUMNS} FROM compute_planes WHERE id = $1"
        )))
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
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(compute_plane_id)
        .bind(token_hash)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
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
            "SELECT compute_plane_id, expires_at, used_at FROM enrollment_tokens WHERE token_hash = $1",
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
        let mut tx = self.pool.begin().await?;
        // The row lock of the UPDATE makes a concurrent redeem of the same token wait and
        // then find it used.
        let row: Option<(String,)> = sqlx::query_as(
            "UPDATE enrollment_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING compute_plane_id",
        )
        .bind(now)
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((cp_id,)) = row else {
            tx.rollback().await?;
            return match self.peek_enrollment_token(token_hash, now).await? {
                Err(e) => Ok(Err(e)),
                Ok(_) => Ok(Err(RedeemError::Used)),
            };
        };
        insert_certificate(&mut tx, &cp_id, cert).await?;
        sqlx::query("UPDATE compute_planes SET agent_revoked = FALSE WHERE id = $1")
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
        let mut tx = self.pool.begin().await?;
        insert_certificate(&mut tx, compute_plane_id, cert).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn certificate_allowed(
        &self,
        compute_plane_id: &str,
        serial: &str,
    ) -> Result<bool, StoreError> {
        let row: Option<(bool,)> = sqlx::query_as(
            "SELECT NOT c.revoked AND NOT p.agent_revoked \
             FROM agent_certificates c JOIN compute_planes p ON p.id = c.compute_plane_id \
             WHERE c.serial = $1 AND c.compute_plane_id = $2",
        )
        .bind(serial)
        .bind(compute_plane_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some_and(|(ok,)| ok))
    }

    async fn revoke_agent(&self, compute_plane_id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query(
            "UPDATE compute_planes SET agent_revoked = TRUE, agent_connected = FALSE WHERE id = $1",
        )
        .bind(compute_plane_id)
        .execute(&mut *tx)
        .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::NotFound("compute plane"));
        }
        sqlx::query("UPDATE agent_certificates SET revoked = TRUE WHERE compute_plane_id = $1")
            .bind(compute_plane_id)
            .execute(&mut *tx)
            .await?;
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
        "INSERT INTO agent_certificates (serial, compute_plane_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&cert.serial)
    .bind(compute_plane_id)
    .bind(cert.issued_at)
    .bind(cert.expires_at)
    .execute(&mut **tx)
    .await
    .map_err(|e| match missing_or(e, "compute plane") {
        StoreError::Database(e) => {
            conflict_or(e, format!("certificate {} already recorded", cert.serial))
        }
        other => other,
    })?;
    sqlx::query(
        "UPDATE compute_planes SET agent_cert_serial = $1, agent_cert_expires_at = $2 WHERE id = $3",
    )
    .bind(&cert.serial)
    .bind(cert.expires_at)
    .bind(compute_plane_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
