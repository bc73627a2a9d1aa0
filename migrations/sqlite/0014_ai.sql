-- AI analysis: a run (asked for by an agent, or by a conversation going quiet) and the insight
-- it produced. A run that fails keeps its error and makes no insight.
CREATE TABLE ai_runs (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    trigger_kind     TEXT NOT NULL CHECK (trigger_kind IN ('manual', 'idle')),
    status           TEXT NOT NULL CHECK (status IN ('queued', 'completed', 'failed')),
    error            TEXT,
    requested_by     TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX ai_runs_conversation ON ai_runs (conversation_id, created_at);

CREATE TABLE ai_insights (
    id                 TEXT PRIMARY KEY,
    run_id             TEXT NOT NULL UNIQUE REFERENCES ai_runs (id) ON DELETE CASCADE,
    workspace_id       TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    conversation_id    TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    trigger_kind       TEXT NOT NULL,
    -- {summary, openQuestions, recommendations, suggestedReply, sentiment, language} as JSON.
    body               TEXT NOT NULL,
    from_seq           BIGINT NOT NULL,
    to_seq             BIGINT NOT NULL,
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    prompt_tokens      BIGINT NOT NULL DEFAULT 0,
    completion_tokens  BIGINT NOT NULL DEFAULT 0,
    latency_ms         BIGINT NOT NULL,
    created_at         BIGINT NOT NULL
);
CREATE INDEX ai_insights_conversation ON ai_insights (conversation_id, created_at);
