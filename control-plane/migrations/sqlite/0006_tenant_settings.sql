-- Settings for every compute plane of a tenant: one change that reaches all its agents.
-- A compute plane's own settings override them key by key.
ALTER TABLE tenants ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
