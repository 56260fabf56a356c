-- Users and their logins.
CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    -- Default approval mode for the user's new sessions.
    approval_mode TEXT NOT NULL DEFAULT 'risky',
    created_at TEXT NOT NULL
);

-- Server-side login sessions; only a hash of the cookie token is kept.
CREATE TABLE logins (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX logins_user ON logins(user_id);

-- Chat sessions.
CREATE TABLE chat_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    model TEXT NOT NULL,
    approval_mode TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX chat_sessions_user ON chat_sessions(user_id, updated_at);

-- The session's event log, replayed by `history`: one protocol event (JSON)
-- per row, in order.
CREATE TABLE events (
    id SERIAL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES chat_sessions(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX events_session ON events(session_id, id);

-- Every tool call: the audit trail, and the result handed to the model.
CREATE TABLE tool_calls (
    call_id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES chat_sessions(id) ON DELETE CASCADE,
    turn_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    code TEXT NOT NULL,
    risk_level TEXT NOT NULL,
    risk_reasons TEXT NOT NULL,
    approval_mode TEXT NOT NULL,
    decision TEXT,
    decided_by TEXT,
    decided_at TEXT,
    exit_code BIGINT,
    result_for_model TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX tool_calls_session ON tool_calls(session_id, created_at);

-- Installation-wide values, such as the instance id that labels containers.
CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
