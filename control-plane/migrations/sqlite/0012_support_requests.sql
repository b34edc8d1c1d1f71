-- Diagnostic bundles the control plane asked an agent for; sent only after the customer
-- approved them in the VPC, before expires_at_ms.
CREATE TABLE support_requests (
    id TEXT PRIMARY KEY,
    compute_plane_id TEXT NOT NULL REFERENCES compute_planes (id) ON DELETE CASCADE,
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    received_at_ms INTEGER,
    bundle TEXT
);
CREATE INDEX support_requests_by_cp ON support_requests (compute_plane_id, requested_at_ms);
