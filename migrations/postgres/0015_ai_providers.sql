-- AI analysis, second part: the workspaces' provider keys, every provider call (its usage and
-- what was sent), the budget notices, and how far the idle trigger has analysed each
-- conversation.

-- A workspace's keys for an OpenAI-compatible provider. The key itself is sealed with the
-- server secret (like channel secrets); only its last four characters are kept in clear.
CREATE TABLE ai_keys (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    secret        TEXT NOT NULL,
    last4         TEXT NOT NULL,
    base_url      TEXT NOT NULL,
    model         TEXT NOT NULL,
    -- 'retiring' until retires_at (a rotation's grace period), then 'revoked'.
    status        TEXT NOT NULL CHECK (status IN ('active', 'retiring', 'revoked')),
    retires_at    BIGINT,
    created_by    TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX ai_keys_workspace ON ai_keys (workspace_id, created_at);

-- One row per provider call, made or refused by the budget: the usage, the outcome and what
-- was sent (after masking), for the admins to read.
CREATE TABLE ai_calls (
    id                 TEXT PRIMARY KEY,
    workspace_id       TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    run_id             TEXT REFERENCES ai_runs (id) ON DELETE SET NULL,
    conversation_id    TEXT REFERENCES conversations (id) ON DELETE SET NULL,
    -- NULL: the server's default provider.
    key_id             TEXT REFERENCES ai_keys (id) ON DELETE SET NULL,
    base_url           TEXT NOT NULL,
    model              TEXT NOT NULL,
    outcome            TEXT NOT NULL CHECK (outcome IN ('ok', 'failed', 'refused')),
    error              TEXT,
    attempts           INTEGER NOT NULL,
    prompt_tokens      BIGINT NOT NULL DEFAULT 0,
    completion_tokens  BIGINT NOT NULL DEFAULT 0,
    -- 1 when the provider reported no usage and the tokens were counted here.
    tokens_counted     INTEGER NOT NULL DEFAULT 0,
    latency_ms         BIGINT NOT NULL,
    -- The chat messages sent, as JSON; the messages left out for the context budget.
    sent               TEXT,
    trimmed            INTEGER NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL
);
CREATE INDEX ai_calls_workspace ON ai_calls (workspace_id, created_at);

-- The admins are told once a month that the budget ran out.
CREATE TABLE ai_budget_notices (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    month         TEXT NOT NULL,
    at            BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, month)
);

-- The newest message an analysis has read (or a run was asked for): the idle trigger looks
-- for conversations with messages after it that have been quiet long enough. The partial
-- index holds only those.
ALTER TABLE conversations ADD COLUMN ai_through_seq BIGINT NOT NULL DEFAULT 0;
UPDATE conversations SET ai_through_seq = last_seq;
CREATE INDEX conversations_ai_due ON conversations (workspace_id, last_activity_at, id)
    WHERE last_seq > ai_through_seq AND kind IN ('channel', 'support');
