//! PostgreSQL store: several control-plane replicas share one database. sqlx's postgres
//! driver over rustls (aws-lc-rs: the one crypto provider); migrations of its own
//! (`migrations/postgres`), which sqlx runs under an advisory lock so replicas starting
//! together run each one once.
//!
//! Unlike SQLite there is no in-process write gate: PostgreSQL has row locks. Writers that
//! must not interleave for one compute plane (a cluster PUT checking its catalogs and a
//! catalog DELETE checking its users; two ingests of one agent during a supersede) first
//! lock the compute plane's row by bumping or selecting it `FOR UPDATE`. Transactions that
//! touch many compute planes lock them in id order, so two of them never deadlock.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

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

/// A transaction of this backend.
type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// Connections per replica. PostgreSQL's default `max_connections` is 100: six replicas
/// with 16 each leave room for an operator's psql and a backup.
const MAX_CONNECTIONS: u32 = 16;
/// How long a caller waits for a pooled connection before the store says unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db?sslmode=verify-full&sslrootcert=…`)
    /// and runs pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let options = options.application_name("tether-control-plane");
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A connection that PostgreSQL closed (a restart, a failover) is found out
            // before it is handed out, not by the caller's query.
            .test_before_acquire(true)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The pool, for what lives beside the store (notifications, advisory locks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Bumps and returns the compute plane's generation inside `tx`, locking its row until
/// the commit.
async fn bump(tx: &mut Tx<'_>, cp: &str) -> Result<i64, StoreError> {
    let row: Option<(i64,)> = sqlx::query_as(
        "UPDATE compute_planes SET generation = generation + 1 WHERE id = $1 RETURNING generation",
    )
    .bind(cp)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|(g,)| g)
        .ok_or(StoreError::NotFound("compute plane"))
}
