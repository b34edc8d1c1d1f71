-- Secrets sealed with the key-encryption key (see src/secrets.rs): the CA private key, the
-- TLS session-ticket key and what follows. Never a secret in plain text.
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    sealed      BLOB NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- One-time set-up steps done by the first control plane on a new database (the first
-- platform admin token), so that replicas starting together do it once.
CREATE TABLE bootstrap (
    what  TEXT PRIMARY KEY,
    at    INTEGER NOT NULL
);
INSERT INTO bootstrap (what, at)
    SELECT 'platform-admin', MIN(created_at) FROM api_tokens WHERE role = 'platform_admin'
    HAVING COUNT(*) > 0;
