-- The PostgreSQL schema: the same concepts as the SQLite one (migrations/sqlite), in
-- PostgreSQL's types. Times are Unix seconds or ms (BIGINT) so comparisons happen in SQL;
-- specs, statuses and settings are JSONB. sqlx runs migrations under an advisory lock, so
-- replicas that start together run each one once.

CREATE TABLE tenants (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    aws_account_id  TEXT,
    account_binding BOOLEAN NOT NULL DEFAULT TRUE,
    settings        JSONB NOT NULL DEFAULT '{}',
    created_at      BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT REFERENCES tenants(id),   -- NULL for the platform admin
    role        TEXT NOT NULL CHECK (role IN ('platform_admin', 'admin', 'operator', 'viewer')),
    token_hash  TEXT NOT NULL UNIQUE,          -- SHA-256 hex; the token itself is never stored
    created_at  BIGINT NOT NULL
);

CREATE TABLE compute_planes (
    id                      TEXT PRIMARY KEY,
    tenant_id               TEXT NOT NULL REFERENCES tenants(id),
    name                    TEXT NOT NULL,
    region                  TEXT NOT NULL,
    created_at              BIGINT NOT NULL,
    -- Last known agent state, kept by the session that owns it.
    agent_connected         BOOLEAN NOT NULL DEFAULT FALSE,
    agent_session_id        TEXT,
    agent_connected_since   BIGINT,
    agent_version           TEXT,
    agent_last_heartbeat    BIGINT,
    agent_remote_addr       TEXT,
    agent_cert_serial       TEXT,
    agent_cert_expires_at   BIGINT,
    agent_revoked           BOOLEAN NOT NULL DEFAULT FALSE,
    -- Desired state and the agent's last ack.
    generation              BIGINT NOT NULL DEFAULT 0,
    applied_generation      BIGINT NOT NULL DEFAULT 0,
    applied_conditions      JSONB NOT NULL DEFAULT '[]',
    settings                JSONB NOT NULL DEFAULT '{}',
    -- Telemetry high-water mark and what the agent reported dropped.
    telemetry_acked_seq     BIGINT NOT NULL DEFAULT 0,
    telemetry_dropped       BIGINT NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, name)
);

CREATE TABLE enrollment_tokens (
    id                TEXT PRIMARY KEY,
    compute_plane_id  TEXT NOT NULL REFERENCES compute_planes(id),
    token_hash        TEXT NOT NULL UNIQUE,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    used_at           BIGINT
);

CREATE TABLE agent_certificates (
    serial            TEXT PRIMARY KEY,
    compute_plane_id  TEXT NOT NULL REFERENCES compute_planes(id),
    issued_at         BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    revoked           BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX agent_certificates_cp ON agent_certificates (compute_plane_id);

CREATE TABLE catalogs (
    compute_plane_id  TEXT NOT NULL REFERENCES compute_planes(id),
    name              TEXT NOT NULL,
    spec              JSONB NOT NULL,           -- validated CatalogSpec
    generation        BIGINT NOT NULL,          -- compute plane generation of the last change
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (compute_plane_id, name)
);

CREATE TABLE clusters (
    compute_plane_id    TEXT NOT NULL REFERENCES compute_planes(id),
    name                TEXT NOT NULL,
    spec                JSONB NOT NULL,         -- validated ClusterSpec
    generation          BIGINT NOT NULL,        -- compute plane generation of the last change
    deleted_generation  BIGINT,                 -- set by DELETE; the row goes once the agent applied it
    status              JSONB,                  -- last ClusterStatus from the agent
    observed_generation BIGINT NOT NULL DEFAULT 0,
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (compute_plane_id, name)
);

-- Telemetry: metadata only, text redacted by the agent. Deduplicated by sequence number
-- (compute_planes.telemetry_acked_seq) and by query id (the unique constraint).
CREATE TABLE query_records (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,   -- pagination cursor
    compute_plane_id   TEXT NOT NULL REFERENCES compute_planes(id),
    query_id           TEXT NOT NULL,
    cluster            TEXT NOT NULL,
    user_name          TEXT NOT NULL,
    source             TEXT NOT NULL,
    catalog            TEXT NOT NULL,
    schema_name        TEXT NOT NULL,
    state              TEXT NOT NULL,
    error_type         TEXT NOT NULL,
    error_code         TEXT NOT NULL,
    error_message      TEXT NOT NULL,
    create_time_ms     BIGINT NOT NULL,
    end_time_ms        BIGINT NOT NULL,
    queued_time_ms     BIGINT NOT NULL,
    elapsed_time_ms    BIGINT NOT NULL,
    cpu_time_ms        BIGINT NOT NULL,
    peak_memory_bytes  BIGINT NOT NULL,
    input_rows         BIGINT NOT NULL,
    input_bytes        BIGINT NOT NULL,
    output_rows        BIGINT NOT NULL,
    query              TEXT NOT NULL,
    fingerprint        TEXT NOT NULL,
    UNIQUE (compute_plane_id, query_id)
);
CREATE INDEX query_records_cp_id ON query_records (compute_plane_id, id);
-- Retention deletes by time in batches; BRIN indexes cost next to nothing on
-- append-mostly, time-ordered rows.
CREATE INDEX query_records_end_time ON query_records USING brin (end_time_ms);

CREATE TABLE metric_samples (
    compute_plane_id  TEXT NOT NULL REFERENCES compute_planes(id),
    cluster           TEXT NOT NULL,
    name              TEXT NOT NULL,
    ts_ms             BIGINT NOT NULL,
    value             DOUBLE PRECISION NOT NULL
);
CREATE INDEX metric_samples_lookup ON metric_samples (compute_plane_id, name, cluster, ts_ms);
CREATE INDEX metric_samples_time ON metric_samples USING brin (ts_ms);

CREATE TABLE events (
    compute_plane_id  TEXT NOT NULL REFERENCES compute_planes(id),
    cluster           TEXT NOT NULL,
    type              TEXT NOT NULL,
    reason            TEXT NOT NULL,
    message           TEXT NOT NULL,
    ts_ms             BIGINT NOT NULL
);
CREATE INDEX events_cp_time ON events (compute_plane_id, ts_ms);
CREATE INDEX events_time ON events USING brin (ts_ms);

-- Audit trail of every mutating call and sign-in. Append-only: the triggers refuse UPDATE,
-- DELETE and TRUNCATE, so not even a bug in the control plane can rewrite history.
CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    token_id    TEXT,
    role        TEXT,
    tenant_id   TEXT,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    result      TEXT NOT NULL CHECK (result IN ('ok', 'denied', 'rejected', 'error')),
    status      INTEGER NOT NULL,
    client_addr TEXT NOT NULL,
    via         TEXT NOT NULL CHECK (via IN ('api', 'dashboard'))
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Dashboard sign-ins: the cookie holds a random id, only its hash is stored.
CREATE TABLE dashboard_sessions (
    id_hash     TEXT PRIMARY KEY,
    token_id    TEXT NOT NULL REFERENCES api_tokens(id),
    csrf        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL
);

-- Node time per cluster and hour (the basis of billing; kept beyond telemetry retention),
-- and the last sample of each series that feeds it.
CREATE TABLE usage_hourly (
    compute_plane_id TEXT NOT NULL REFERENCES compute_planes(id),
    cluster          TEXT NOT NULL,
    hour_ms          BIGINT NOT NULL,
    node_ms          BIGINT NOT NULL,
    PRIMARY KEY (compute_plane_id, cluster, hour_ms)
);
CREATE TABLE usage_cursor (
    compute_plane_id TEXT NOT NULL,
    cluster          TEXT NOT NULL,
    name             TEXT NOT NULL,
    last_ms          BIGINT NOT NULL,
    last_value       DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (compute_plane_id, cluster, name)
);

-- Secrets sealed with the key-encryption key (see src/secrets.rs): the CA private key, the
-- TLS session-ticket key and what follows. Never a secret in plain text.
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    sealed      BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- One-time set-up steps done by the first replica on a new database (the first platform
-- admin token), so that replicas starting together do it once.
CREATE TABLE bootstrap (
    what  TEXT PRIMARY KEY,
    at    BIGINT NOT NULL
);

-- The replicas of the control plane: each renews its lease; when one stops renewing, the
-- others mark its agents' sessions disconnected (compute_planes.agent_replica).
ALTER TABLE compute_planes ADD COLUMN agent_replica TEXT;
CREATE INDEX compute_planes_replica ON compute_planes (agent_replica) WHERE agent_connected;

CREATE TABLE replicas (
    name          TEXT PRIMARY KEY,
    started_ms    BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL,
    lease_ms      BIGINT NOT NULL,
    sessions      BIGINT NOT NULL DEFAULT 0,
    draining      BOOLEAN NOT NULL DEFAULT FALSE
);
