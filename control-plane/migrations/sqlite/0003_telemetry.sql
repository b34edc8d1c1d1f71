-- Telemetry from agents: query records (metadata only, text redacted by the agent),
-- metric samples and events, plus each compute plane's telemetry high-water mark.

ALTER TABLE compute_planes ADD COLUMN telemetry_acked_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE compute_planes ADD COLUMN telemetry_dropped INTEGER NOT NULL DEFAULT 0;

CREATE TABLE query_records (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,   -- pagination cursor
    compute_plane_id   TEXT NOT NULL REFERENCES compute_planes(id),
    query_id           TEXT NOT NULL,
    cluster            TEXT NOT NULL,
    user               TEXT NOT NULL,
    source             TEXT NOT NULL,
    catalog            TEXT NOT NULL,
    schema             TEXT NOT NULL,
    state              TEXT NOT NULL,
    error_type         TEXT NOT NULL,
    error_code         TEXT NOT NULL,
    error_message      TEXT NOT NULL,
    create_time_ms     INTEGER NOT NULL,
    end_time_ms        INTEGER NOT NULL,
    queued_time_ms     INTEGER NOT NULL,
    elapsed_time_ms    INTEGER NOT NULL,
    cpu_time_ms        INTEGER NOT NULL,
    peak_memory_bytes  INTEGER NOT NULL,
    input_rows         INTEGER NOT NULL,
    input_bytes        INTEGER NOT NULL,
    output_rows        INTEGER NOT NULL,
    query              TEXT NOT NULL,
    fingerprint        TEXT NOT NULL,
    UNIQUE (compute_plane_id, query_id)
);
CREATE INDEX query_records_cp_time ON query_records (compute_plane_id, end_time_ms);

CREATE TABLE metric_samples (
    compute_plane_id  TEXT NOT NULL REFERENCES compute_planes(id),
    cluster           TEXT NOT NULL,
    name              TEXT NOT NULL,
    ts_ms             INTEGER NOT NULL,
    value             REAL NOT NULL
);
CREATE INDEX metric_samples_lookup ON metric_samples (compute_plane_id, name, cluster, ts_ms);

CREATE TABLE events (
    compute_plane_id  TEXT NOT NULL REFERENCES compute_planes(id),
    cluster           TEXT NOT NULL,
    type              TEXT NOT NULL,
    reason            TEXT NOT NULL,
    message           TEXT NOT NULL,
    ts_ms             INTEGER NOT NULL
);
CREATE INDEX events_cp_time ON events (compute_plane_id, ts_ms);

-- Compute-plane settings sent with the desired state (e.g. query_text_redaction).
ALTER TABLE compute_planes ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
