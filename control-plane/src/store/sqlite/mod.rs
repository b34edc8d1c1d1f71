//! SQLite store: one file under the data dir, WAL journal, migrations embedded in the
//! binary. Writers of the process take turns on one in-process gate (SQLite has one
//! writer at a time); that machinery stays in this module.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::StoreError;

mod audit;
mod compute_planes;
mod desired;
mod identity;
mod presence;
mod replicas;
mod secrets;
mod support;
mod telemetry;
mod tenants;
mod usage;

/// A write transaction of this backend.
type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

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
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
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

/// For tests: a store in a temp dir with tenant `acme` and its compute plane `prod`.
#[cfg(test)]
pub(crate) async fn test_store() -> (tempfile::TempDir, SqliteStore, crate::store::ComputePlane) {
    use crate::store::{ComputePlaneStore, TenantStore};
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
