-- Undo: one row per checkpoint, taken before a command that may change
-- the workspace (and for changes made between commands, and for each
-- restore, which can itself be undone).
CREATE TABLE checkpoints (
    id SERIAL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES chat_sessions(id) ON DELETE CASCADE,
    -- The tool call, or the restore's own id; NULL for changes made
    -- between commands (uploads, deletes through the file routes).
    call_id TEXT,
    -- 'exec', 'restore' or 'outside'.
    kind TEXT NOT NULL,
    -- For a restore: the call whose checkpoint it went back to, and who
    -- asked.
    reverted_call_id TEXT,
    by_user TEXT,
    -- Retention dropped it: its rows stay for the record, its contents
    -- may be gone.
    dropped BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TEXT NOT NULL
);
CREATE INDEX checkpoints_session ON checkpoints(session_id, id);
CREATE INDEX checkpoints_call ON checkpoints(session_id, call_id);

-- What each checkpointed step changed, one row per path: the entry before
-- and after (JSON: kind, object, size, mode, mtime_ns), and the objects
-- they hold, indexed for retention's reference checks.
CREATE TABLE checkpoint_changes (
    checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    before TEXT,
    after TEXT,
    before_object TEXT,
    after_object TEXT,
    PRIMARY KEY (checkpoint_id, path)
);
CREATE INDEX checkpoint_changes_before ON checkpoint_changes(before_object);
CREATE INDEX checkpoint_changes_after ON checkpoint_changes(after_object);
