-- People: each tenant's identity provider, the users who signed in through it, their
-- tokens (a dashboard session's own, and personal API tokens with an expiry), and the
-- OIDC sign-ins under way.

-- The provider's configuration as JSON, without its secret (kept sealed in `secrets`).
CREATE TABLE identity_providers (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants(id),
    kind        TEXT NOT NULL CHECK (kind IN ('oidc', 'ldap')),
    config      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- `scope` is the tenant id, or 'platform' for the vendor's staff (tenant_id NULL).
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    scope           TEXT NOT NULL,
    tenant_id       TEXT REFERENCES tenants(id),
    via             TEXT NOT NULL CHECK (via IN ('oidc', 'ldap')),
    subject         TEXT NOT NULL,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('platform_admin', 'admin', 'operator', 'viewer')),
    created_at      INTEGER NOT NULL,
    last_sign_in_at INTEGER NOT NULL,
    UNIQUE (scope, via, subject)
);

ALTER TABLE api_tokens ADD COLUMN user_id TEXT REFERENCES users(id);
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;

-- An OIDC sign-in between the redirect to the provider and its callback: found by the
-- hash of its `state`, used once, gone after LOGIN_STATE_MS.
CREATE TABLE oidc_logins (
    state_hash     TEXT PRIMARY KEY,
    scope          TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    pkce_verifier  TEXT NOT NULL,
    expires_ms     INTEGER NOT NULL
);

-- Audit entries name the person, not only the token.
ALTER TABLE audit_log ADD COLUMN user_name TEXT;
