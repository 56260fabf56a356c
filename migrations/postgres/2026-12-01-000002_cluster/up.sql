-- Nodes of a cluster (one row on a single machine): each beats its
-- heartbeat_at while it runs; `ironclaw check` lists them.
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY NOT NULL,
    advertise_url TEXT NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);

-- Which node runs a session's actors: a lease, renewed by the holder's
-- heartbeat and taken over by another node once it has expired.
CREATE TABLE session_leases (
    session_id TEXT PRIMARY KEY NOT NULL REFERENCES chat_sessions(id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX session_leases_node ON session_leases(node_id);
