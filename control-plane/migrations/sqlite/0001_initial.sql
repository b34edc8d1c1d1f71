-- Tenants, API tokens, compute planes, enrollment tokens, agent certificates.
-- Times are Unix seconds (INTEGER) so comparisons happen in SQL.

CREATE TABLE tenants (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    aws_account_id  TEXT,
    created_at      INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT REFERENCES tenants(id),   -- NULL for the platform admin
    role        TEXT NOT NULL CHECK (role IN ('platform_admin', 'admin', 'operator', 'viewer')),
    token_hash  TEXT NOT NULL UNIQUE,          -- SHA-256 hex; the token itself is never stored
    created_at  INTEGER NOT NULL
);

CREATE TABLE compute_planes (
    id                      TEXT PRIMARY KEY,
    tenant_id               TEXT NOT NULL REFERENCES tenants(id),
    name                    TEXT NOT NULL,
    region                  TEXT NOT NULL,
    created_at              INTEGER NOT NULL,
    -- Last known agent state, kept by the session that owns it.
    agent_connected         INTEGER NOT NULL DEFAULT 0,
    agent_session_id        TEXT,
    agent_connected_since   INTEGER,
    agent_version           TEXT,
    agent_last_heartbeat    INTEGER,
    agent_remote_addr       TEXT,
    agent_cert_serial       TEXT,
    agent_cert_expires_at   INTEGER,
    agent_revoked           INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, name)
);

CREATE TABLE enrollment_tokens (
    id                TEXT PRIMARY KEY,
    compute_plane_id  TEXT NOT NULL REFERENCES compute_planes(id),
    token_hash        TEXT NOT NULL UNIQUE,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    used_at           INTEGER
);

CREATE TABLE agent_certificates (
    serial            TEXT PRIMARY KEY,
    compute_plane_id  TEXT NOT NULL REFERENCES compute_planes(id),
    issued_at         INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    revoked           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX agent_certificates_cp ON agent_certificates (compute_plane_id);
