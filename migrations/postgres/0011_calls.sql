-- Calls: one row per call, from the invite to its end. `state` only moves forward
-- (ringing -> active -> ended, or ringing -> ended); each move is one guarded UPDATE.
CREATE TABLE calls (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    caller_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    callee_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    media            TEXT NOT NULL CHECK (media IN ('audio', 'video')),
    -- The caller's SDP offer, for a callee's device that connects while it rings.
    offer            TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('ringing', 'active', 'ended')),
    -- Set when it ends: answered, missed, rejected, busy or failed.
    outcome          TEXT CHECK (outcome IN ('answered', 'missed', 'rejected', 'busy', 'failed')),
    -- The devices (sessions) in the call and the nodes they are connected to.
    caller_session   TEXT NOT NULL,
    caller_node      TEXT NOT NULL,
    callee_session   TEXT,
    callee_node      TEXT,
    started_at       BIGINT NOT NULL,
    answered_at      BIGINT,
    ended_at         BIGINT
);
CREATE INDEX calls_caller ON calls (caller_id, started_at, id);
CREATE INDEX calls_callee ON calls (callee_id, started_at, id);
CREATE INDEX calls_live ON calls (state) WHERE state <> 'ended';

-- Who is in a call (ringing or talking): one line per user, so that two invites at once
-- cannot both ring the same person. Deleted with the move to `ended`.
CREATE TABLE call_lines (
    user_id  TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    call_id  TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE
);
CREATE INDEX call_lines_call ON call_lines (call_id);
