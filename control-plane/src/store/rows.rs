//! Rows as the store's types, once for both backends: each backend's row type says how it
//! reads a column of each kind ([`StoreRow`]), and every mapper here is written against
//! that. (SQLite keeps flags as integers and PostgreSQL as booleans; PostgreSQL's
//! `INTEGER` columns are 32 bits.)

use tether_shared::status::ClusterStatus;

use super::{
    AgentState, ApiToken, AuditEntry, AuditResult, CatalogRow, ClusterRow, ComputePlane, QueryRow,
    Replica, Settings, StoreError, Tenant, User, from_json,
};
use crate::authz::Role;
use crate::identity::Via;

/// How a backend's row reads a column of each kind.
pub(crate) trait StoreRow {
    /// A text column.
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    /// A nullable text column.
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    /// An integer column.
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    /// A nullable integer column.
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    /// A flag.
    fn flag(&self, column: &str) -> Result<bool, sqlx::Error>;
}

impl StoreRow for sqlx::sqlite::SqliteRow {
    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        sqlx::Row::try_get(self, column)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::Row::try_get(self, column)
    }
    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        sqlx::Row::try_get(self, column)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::Row::try_get(self, column)
    }
    fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
        Ok(sqlx::Row::try_get::<i64, _>(self, column)? != 0)
    }
}

impl StoreRow for sqlx::postgres::PgRow {
    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        sqlx::Row::try_get(self, column)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::Row::try_get(self, column)
    }
    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        sqlx::Row::try_get::<i64, _>(self, column)
            .or_else(|_| sqlx::Row::try_get::<i32, _>(self, column).map(i64::from))
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::Row::try_get(self, column)
    }
    fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
        sqlx::Row::try_get(self, column)
    }
}

/// A tenant (`settings` as JSON text).
pub(crate) fn tenant(row: &impl StoreRow) -> Result<Tenant, StoreError> {
    let name = row.text("name")?;
    let settings = row.text("settings")?;
    Ok(Tenant {
        settings: from_json::<Settings>("settings", &name, &settings)?,
        id: row.text("id")?,
        name,
        aws_account_id: row.opt_text("aws_account_id")?,
        account_binding: row.flag("account_binding")?,
        created_at: row.int("created_at")?,
    })
}

/// The columns [`api_token`] reads, of `api_tokens t` joined with `users u` (see
/// [`TOKEN_FROM`]).
pub(crate) const TOKEN_COLUMNS: &str =
    "t.id, t.tenant_id, t.role, t.expires_at, t.user_id, u.name AS user_name, u.via AS user_via";
/// The tokens and their people.
pub(crate) const TOKEN_FROM: &str = "api_tokens t LEFT JOIN users u ON u.id = t.user_id";

/// An API token (`id`, `tenant_id`, `role`, `expires_at`, and its person's `user_name`
/// and `user_via` when it is theirs); `None` for a role this version does not know.
pub(crate) fn api_token(row: &impl StoreRow) -> Result<Option<ApiToken>, sqlx::Error> {
    let user = match (row.opt_text("user_name")?, row.opt_text("user_via")?) {
        (Some(name), Some(via)) => Some(format!("{name} via {via}")),
        _ => None,
    };
    Ok(match Role::parse(&row.text("role")?) {
        Some(role) => Some(ApiToken {
            id: row.text("id")?,
            tenant_id: row.opt_text("tenant_id")?,
            role,
            user,
            user_id: row.opt_text("user_id")?,
            expires_at: row.opt_int("expires_at")?,
        }),
        None => None,
    })
}

/// A compute plane (`applied_conditions` as JSON text).
pub(crate) fn compute_plane(row: &impl StoreRow) -> Result<ComputePlane, StoreError> {
    let id = row.text("id")?;
    let conditions = row.text("applied_conditions")?;
    Ok(ComputePlane {
        applied_conditions: from_json("applied conditions", &id, &conditions)?,
        id,
        tenant_id: row.text("tenant_id")?,
        name: row.text("name")?,
        region: row.text("region")?,
        created_at: row.int("created_at")?,
        agent: AgentState {
            connected: row.flag("agent_connected")?,
            session_id: row.opt_text("agent_session_id")?,
            connected_since: row.opt_int("agent_connected_since")?,
            version: row.opt_text("agent_version")?,
            last_heartbeat: row.opt_int("agent_last_heartbeat")?,
            remote_addr: row.opt_text("agent_remote_addr")?,
            certificate_serial: row.opt_text("agent_cert_serial")?,
            certificate_expires_at: row.opt_int("agent_cert_expires_at")?,
            revoked: row.flag("agent_revoked")?,
            replica: row.opt_text("agent_replica")?,
        },
        generation: row.int("generation")?,
        applied_generation: row.int("applied_generation")?,
        telemetry_dropped: row.int("telemetry_dropped")?.max(0) as u64,
        telemetry_dropped_by_class: super::DroppedRecords {
            total: row.int("telemetry_dropped")?.max(0) as u64,
            events: row.int("telemetry_dropped_events")?.max(0) as u64,
            metrics: row.int("telemetry_dropped_metrics")?.max(0) as u64,
            query_records: row.int("telemetry_dropped_query_records")?.max(0) as u64,
        },
    })
}

/// A cluster (`spec` and `status` as JSON text).
pub(crate) fn cluster(row: &impl StoreRow) -> Result<ClusterRow, StoreError> {
    let name = row.text("name")?;
    let spec = row.text("spec")?;
    let status = row.opt_text("status")?;
    Ok(ClusterRow {
        spec: from_json("cluster", &name, &spec)?,
        status: status
            .map(|s| from_json::<ClusterStatus>("cluster status", &name, &s))
            .transpose()?,
        generation: row.int("generation")?,
        deleted_generation: row.opt_int("deleted_generation")?,
        observed_generation: row.int("observed_generation")?,
        name,
    })
}

/// A catalog (`spec` as JSON text).
pub(crate) fn catalog(row: &impl StoreRow) -> Result<CatalogRow, StoreError> {
    let name = row.text("name")?;
    let spec = row.text("spec")?;
    Ok(CatalogRow {
        spec: from_json("catalog", &name, &spec)?,
        generation: row.int("generation")?,
        name,
    })
}

/// A query record (columns named as [`QueryRow`]'s fields).
pub(crate) fn query(row: &impl StoreRow) -> Result<QueryRow, sqlx::Error> {
    Ok(QueryRow {
        query_id: row.text("query_id")?,
        cluster: row.text("cluster")?,
        user: row.text("user")?,
        source: row.text("source")?,
        catalog: row.text("catalog")?,
        schema: row.text("schema")?,
        state: row.text("state")?,
        error_type: row.text("error_type")?,
        error_code: row.text("error_code")?,
        error_message: row.text("error_message")?,
        create_time_ms: row.int("create_time_ms")?,
        end_time_ms: row.int("end_time_ms")?,
        queued_time_ms: row.int("queued_time_ms")?,
        elapsed_time_ms: row.int("elapsed_time_ms")?,
        cpu_time_ms: row.int("cpu_time_ms")?,
        peak_memory_bytes: row.int("peak_memory_bytes")?,
        input_rows: row.int("input_rows")?,
        input_bytes: row.int("input_bytes")?,
        output_rows: row.int("output_rows")?,
        query: row.text("query")?,
        fingerprint: row.text("fingerprint")?,
    })
}

/// An audit entry.
pub(crate) fn audit_entry(row: &impl StoreRow) -> Result<AuditEntry, sqlx::Error> {
    Ok(AuditEntry {
        id: row.int("id")?,
        at_ms: row.int("at_ms")?,
        token_id: row.opt_text("token_id")?,
        role: row.opt_text("role")?,
        tenant_id: row.opt_text("tenant_id")?,
        action: row.text("action")?,
        target: row.text("target")?,
        result: match row.text("result")?.as_str() {
            "ok" => AuditResult::Ok,
            "denied" => AuditResult::Denied,
            "rejected" => AuditResult::Rejected,
            _ => AuditResult::Error,
        },
        status: u16::try_from(row.int("status")?).unwrap_or(0),
        client_addr: row.text("client_addr")?,
        via: row.text("via")?,
        user: row.opt_text("user_name")?,
    })
}

/// A user; `None` for a role or provider kind this version does not know.
pub(crate) fn user(row: &impl StoreRow) -> Result<Option<User>, sqlx::Error> {
    let (Some(role), Some(via)) = (
        Role::parse(&row.text("role")?),
        Via::parse(&row.text("via")?),
    ) else {
        return Ok(None);
    };
    Ok(Some(User {
        id: row.text("id")?,
        tenant_id: row.opt_text("tenant_id")?,
        via,
        subject: row.text("subject")?,
        name: row.text("name")?,
        role,
        created_at: row.int("created_at")?,
        last_sign_in_at: row.int("last_sign_in_at")?,
    }))
}

/// A replica's lease.
pub(crate) fn replica(row: &impl StoreRow) -> Result<Replica, sqlx::Error> {
    Ok(Replica {
        name: row.text("name")?,
        started_ms: row.int("started_ms")?,
        last_seen_ms: row.int("last_seen_ms")?,
        lease_ms: row.int("lease_ms")?,
        sessions: row.int("sessions")?.max(0) as u64,
        draining: row.flag("draining")?,
    })
}
