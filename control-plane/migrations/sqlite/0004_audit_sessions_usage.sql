-- Audit trail of every mutating call and sign-in. Append-only: the triggers refuse UPDATE
-- and DELETE, so not even a bug in the control plane can rewrite history.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       INTEGER NOT NULL,
    token_id    TEXT,                 -- NULL when the caller was not authenticated
    role        TEXT,
    tenant_id   TEXT,                 -- the tenant acted on (or the caller's); NULL: platform
    action      TEXT NOT NULL,        -- e.g. 'PUT /compute-planes/{cp}/clusters/{name}', 'sign-in'
    target      TEXT NOT NULL,        -- the concrete path or object
    result      TEXT NOT NULL CHECK (result IN ('ok', 'denied', 'rejected', 'error')),
    status      INTEGER NOT NULL,     -- HTTP status
    client_addr TEXT NOT NULL,
    via         TEXT NOT NULL CHECK (via IN ('api', 'dashboard'))
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- Dashboard sign-ins: the cookie holds a random id, only its hash is stored.
CREATE TABLE dashboard_sessions (
    id_hash     TEXT PRIMARY KEY,
    token_id    TEXT NOT NULL REFERENCES api_tokens(id),
    csrf        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL
);

-- Node-time per cluster and hour, integrated from the ready pods the agent reports
-- (metric samples ready_workers and coordinator_ready). Kept beyond telemetry retention:
-- it is the basis of billing.
CREATE TABLE usage_hourly (
    compute_plane_id TEXT NOT NULL REFERENCES compute_planes(id),
    cluster          TEXT NOT NULL,
    hour_ms          INTEGER NOT NULL,
    node_ms          INTEGER NOT NULL,
    PRIMARY KEY (compute_plane_id, cluster, hour_ms)
);
-- The last sample of each series that feeds usage_hourly.
CREATE TABLE usage_cursor (
    compute_plane_id TEXT NOT NULL,
    cluster          TEXT NOT NULL,
    name             TEXT NOT NULL,
    last_ms          INTEGER NOT NULL,
    last_value       REAL NOT NULL,
    PRIMARY KEY (compute_plane_id, cluster, name)
);
