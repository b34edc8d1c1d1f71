//! SQLite store: one file under the data dir, WAL journal, migrations embedded in the
//! binary.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::{
    AgentState, ApiToken, ComputePlane, NewCertificate, PresenceUpdate, RedeemError, Role, Store,
    StoreError, Tenant,
};

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// SQLite has one writer at a time. Writers of this process take turns here, first
    /// come first served, instead of polling SQLite's lock in its busy handler — which
    /// under a burst of writes (a reconnect storm) is unfair and gives up after the busy
    /// timeout with "database is locked".
    write_gate: Arc<tokio::sync::Mutex<()>>,
}

/// A pooled connection held with this process's write turn.
pub(super) struct Writer {
    _turn: tokio::sync::OwnedMutexGuard<()>,
    conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
}

impl std::ops::Deref for Writer {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (e.g. `sqlite:///dir/tether.db`)
    /// and runs pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self {
            pool,
            write_gate: Arc::default(),
        })
    }
}

impl SqliteStore {
    /// A write transaction that takes SQLite's write lock up front (`BEGIN IMMEDIATE`).
    /// A deferred transaction that reads first and writes later fails at once with
    /// `SQLITE_BUSY_SNAPSHOT` when another connection committed meanwhile (the busy
    /// timeout does not apply to that case); an immediate one waits its turn instead.
    /// The first value holds this process's write turn: keep it until the commit.
    pub(super) async fn write_tx(
        &self,
    ) -> Result<
        (
            tokio::sync::OwnedMutexGuard<()>,
            sqlx::Transaction<'static, sqlx::Sqlite>,
        ),
        sqlx::Error,
    > {
        let turn = self.write_gate.clone().lock_owned().await;
        Ok((turn, self.pool.begin_with("BEGIN IMMEDIATE").await?))
    }

    /// A connection for one autocommit write statement, with the write turn.
    pub(super) async fn writer(&self) -> Result<Writer, sqlx::Error> {
        let turn = self.write_gate.clone().lock_owned().await;
        Ok(Writer {
            _turn: turn,
            conn: self.pool.acquire().await?,
        })
    }
}

fn conflict_or(e: sqlx::Error, what: String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::Database(e),
    }
}

fn tenant(row: &SqliteRow) -> Result<Tenant, sqlx::Error> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        aws_account_id: row.try_get("aws_account_id")?,
        account_binding: row.try_get::<i64, _>("account_binding")? != 0,
        created_at: row.try_get("created_at")?,
        settings: row.try_get("settings")?,
    })
}

/// For tests: a store in a temp dir with tenant `acme` and its compute plane `prod`.
#[cfg(test)]
pub(crate) async fn test_store() -> (tempfile::TempDir, SqliteStore, ComputePlane) {
    use super::Store;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = SqliteStore::open(&url).await.expect("open");
    let t = store
        .create_tenant("acme", None, true, 0)
        .await
        .expect("tenant");
    let cp = store
        .create_compute_plane(&t.id, "prod", "us-east-1", 0)
        .await
        .expect("cp");
    (dir, store, cp)
}

/// A page of at most `limit` rows out of `limit + 1` fetched, and whether more follow.
pub(super) fn page_of<T>(mut rows: Vec<T>, limit: i64) -> (Vec<T>, bool) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    (rows, more)
}

/// An API token row (`id`, `tenant_id`, `role`); `None` for a role this version does not
/// know.
pub(super) fn api_token(row: &SqliteRow) -> Result<Option<ApiToken>, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(match Role::parse(&role) {
        Some(role) => Some(ApiToken {
            id: row.try_get("id")?,
            tenant_id: row.try_get("tenant_id")?,
            role,
        }),
        None => None,
    })
}

fn compute_plane(row: &SqliteRow) -> Result<ComputePlane, sqlx::Error> {
    Ok(ComputePlane {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        region: row.try_get("region")?,
        created_at: row.try_get("created_at")?,
        agent: AgentState {
            connected: row.try_get::<i64, _>("agent_connected")? != 0,
            session_id: row.try_get("agent_session_id")?,
            connected_since: row.try_get("agent_connected_since")?,
            version: row.try_get("agent_version")?,
            last_heartbeat: row.try_get("agent_last_heartbeat")?,
            remote_addr: row.try_get("agent_remote_addr")?,
            certificate_serial: row.try_get("agent_cert_serial")?,
            certificate_expires_at: row.try_get("agent_cert_expires_at")?,
            revoked: row.try_get::<i64, _>("agent_revoked")? != 0,
        },
        generation: row.try_get("generation")?,
        applied_generation: row.try_get("applied_generation")?,
        applied_conditions: row.try_get("applied_conditions")?,
        telemetry_dropped: row.try_get::<i64, _>("telemetry_dropped")? as u64,
    })
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_tenant(
        &self,
        name: &str,
        aws_account_id: Option<&str>,
        account_binding: bool,
        now: i64,
    ) -> Result<Tenant, StoreError> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO tenants (id, name, aws_account_id, account_binding, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(name)
        .bind(aws_account_id)
        .bind(account_binding)
        .bind(now)
        .execute(&mut *self.writer().await?)
        .await
        .map_err(|e| conflict_or(e, format!("tenant {name:?} already exists")))?;
        Ok(Tenant {
            id,
            name: name.to_owned(),
            aws_account_id: aws_account_id.map(str::to_owned),
            account_binding,
            created_at: now,
            settings: "{}".to_owned(),
        })
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(tenant).collect::<Result<_, _>>()?)
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query("SELECT * FROM tenants WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(tenant).transpose()?)
    }

    async fn create_api_token(
        &self,
        tenant_id: Option<&str>,
        role: Role,
        token_hash: &str,
        now: i64,
    ) -> Result<ApiToken, StoreError> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant_id, role, token_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(role.as_str())
        .bind(token_hash)
        .bind(now)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(ApiToken {
            id,
            tenant_id: tenant_id.map(str::to_owned),
            role,
        })
    }

    async fn find_api_token(&self, token_hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let row = sqlx::query("SELECT id, tenant_id, role FROM api_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(api_token).transpose()?.flatten())
    }

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
        .map_err(|e| conflict_or(e, format!("compute plane {name:?} already exists")))?;
        self.get_compute_plane(&id)
            .await?
            .ok_or(StoreError::NotFound("compute plane"))
    }

    async fn list_compute_planes(&self, tenant_id: &str) -> Result<Vec<ComputePlane>, StoreError> {
        let rows = sqlx::query("SELECT * FROM compute_planes WHERE tenant_id = ? ORDER BY name")
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(compute_plane).collect::<Result<_, _>>()?)
    }

    async fn get_compute_plane(&self, id: &str) -> Result<Option<ComputePlane>, StoreError> {
        let row = sqlx::query("SELECT * FROM compute_planes WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(compute_plane).transpose()?)
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
        .await?;
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
        sqlx::query(
            "UPDATE compute_planes SET agent_revoked = 1, agent_connected = 0 WHERE id = ?",
        )
        .bind(compute_plane_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_presence(&self, updates: &[PresenceUpdate]) -> Result<(), StoreError> {
        // One prepared statement per change, all in one transaction. (Tried: one statement
        // per kind of change for the whole batch with `UPDATE … FROM json_each(?)`; without
        // table statistics SQLite may scan compute_planes for every JSON row, which with
        // 10,000 compute planes made each flush cost more than all the rows it saved.)
        let (_turn, mut tx) = self.write_tx().await?;
        for u in updates {
            let cp = &u.compute_plane_id;
            if let Some(s) = &u.connected {
                sqlx::query(
                    "UPDATE compute_planes SET agent_connected = 1, agent_session_id = ?, \
                     agent_connected_since = ?, agent_version = ?, agent_last_heartbeat = ?, \
                     agent_remote_addr = ? WHERE id = ?",
                )
                .bind(&s.session_id)
                .bind(s.at)
                .bind(&s.version)
                .bind(s.at)
                .bind(&s.remote_addr)
                .bind(cp)
                .execute(&mut *tx)
                .await?;
            }
            if let Some((session, at)) = &u.heartbeat {
                sqlx::query(
                    "UPDATE compute_planes SET agent_last_heartbeat = ? WHERE id = ? AND agent_session_id = ?",
                )
                .bind(at)
                .bind(cp)
                .bind(session)
                .execute(&mut *tx)
                .await?;
            }
            if let Some((generation, conditions)) = &u.applied {
                super::sqlite_desired::record_applied(&mut tx, cp, *generation, conditions).await?;
            }
            if let Some(session) = &u.disconnected {
                sqlx::query(
                    "UPDATE compute_planes SET agent_connected = 0 WHERE id = ? AND agent_session_id = ?",
                )
                .bind(cp)
                .bind(session)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn mark_all_disconnected(&self) -> Result<(), StoreError> {
        sqlx::query("UPDATE compute_planes SET agent_connected = 0")
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(())
    }
}

async fn insert_certificate(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
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
    .await?;
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
