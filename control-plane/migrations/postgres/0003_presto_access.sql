-- Who may query a compute plane's Presto clusters and what they may read: a JSON
-- `PrestoAccess` document sent with the desired state; NULL for Presto's defaults.
ALTER TABLE compute_planes ADD COLUMN presto_access JSONB;
