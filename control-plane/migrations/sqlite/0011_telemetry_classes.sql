-- Telemetry records the agent dropped (spool full), per class: query records go first,
-- then metrics, then events. Running totals, as the agent reports them.
ALTER TABLE compute_planes ADD COLUMN telemetry_dropped_events INTEGER NOT NULL DEFAULT 0;
ALTER TABLE compute_planes ADD COLUMN telemetry_dropped_metrics INTEGER NOT NULL DEFAULT 0;
ALTER TABLE compute_planes ADD COLUMN telemetry_dropped_query_records INTEGER NOT NULL DEFAULT 0;
