-- Which control-plane process holds each agent's session, and the processes themselves
-- (one with SQLite; the same shape as PostgreSQL's fleet of replicas).
ALTER TABLE compute_planes ADD COLUMN agent_replica TEXT;

CREATE TABLE replicas (
    name          TEXT PRIMARY KEY,
    started_ms    INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    lease_ms      INTEGER NOT NULL,
    sessions      INTEGER NOT NULL DEFAULT 0,
    draining      INTEGER NOT NULL DEFAULT 0
);
