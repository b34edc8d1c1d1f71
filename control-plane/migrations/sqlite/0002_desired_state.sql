-- Desired state (clusters, catalogs) with a generation per compute plane, and what the
-- agent last reported.

ALTER TABLE compute_planes ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE compute_planes ADD COLUMN applied_generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE compute_planes ADD COLUMN applied_conditions TEXT NOT NULL DEFAULT '[]';

CREATE TABLE catalogs (
    compute_plane_id  TEXT NOT NULL REFERENCES compute_planes(id),
    name              TEXT NOT NULL,
    spec              TEXT NOT NULL,           -- validated CatalogSpec JSON
    generation        INTEGER NOT NULL,        -- compute plane generation of the last change
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (compute_plane_id, name)
);

CREATE TABLE clusters (
    compute_plane_id  TEXT NOT NULL REFERENCES compute_planes(id),
    name              TEXT NOT NULL,
    spec              TEXT NOT NULL,           -- validated ClusterSpec JSON
    generation        INTEGER NOT NULL,        -- compute plane generation of the last change
    deleted_generation INTEGER,                -- set by DELETE; the row goes once the agent applied it
    status            TEXT,                    -- last ClusterStatus from the agent (JSON)
    observed_generation INTEGER NOT NULL DEFAULT 0,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (compute_plane_id, name)
);
