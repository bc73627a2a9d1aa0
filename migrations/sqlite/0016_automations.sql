-- Automations: a workspace's rules (trigger, conditions, actions, in order), the record of
-- every time one fired or was held back, the marks that make a rule fire once per
-- conversation per window (or once per wait, for timed triggers), and how far the message
-- triggers have read each conversation.

CREATE TABLE automations (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    enabled       INTEGER NOT NULL DEFAULT 1,
    position      INTEGER NOT NULL,
    trigger_type  TEXT NOT NULL,
    -- The whole trigger, conditions and actions as JSON, checked on the way in. A webhook
    -- action's secret is sealed with the server secret inside `actions`.
    trigger       TEXT NOT NULL,
    conditions    TEXT NOT NULL,
    actions       TEXT NOT NULL,
    cooldown_minutes INTEGER NOT NULL,
    -- When the rule was last enabled: timed triggers only count waits that began after it.
    enabled_at    INTEGER NOT NULL,
    created_by    TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX automations_workspace ON automations (workspace_id, enabled, trigger_type);

CREATE TABLE automation_runs (
    id               TEXT PRIMARY KEY,
    automation_id    TEXT NOT NULL REFERENCES automations (id) ON DELETE CASCADE,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    conversation_id  TEXT REFERENCES conversations (id) ON DELETE SET NULL,
    lead_id          TEXT REFERENCES leads (id) ON DELETE SET NULL,
    trigger_type     TEXT NOT NULL,
    message_id       TEXT,
    outcome          TEXT NOT NULL CHECK (outcome IN ('ok', 'failed', 'skipped')),
    error            TEXT,
    -- The actions carried out, as JSON: [{type, ok, error?, detail?}].
    actions          TEXT NOT NULL DEFAULT '[]',
    depth            INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);
CREATE INDEX automation_runs_rule ON automation_runs (automation_id, created_at, id);

-- The last time a rule fired in a conversation, and for timed triggers the wait it answered
-- (the message that started it): claimed with a conditional upsert in the transaction that
-- carries the actions out, so that two workers or two nodes never fire it twice.
CREATE TABLE automation_marks (
    automation_id    TEXT NOT NULL REFERENCES automations (id) ON DELETE CASCADE,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    wait_key         TEXT,
    fired_at         INTEGER NOT NULL,
    PRIMARY KEY (automation_id, conversation_id)
);

-- The last message the message triggers have read in each conversation: a message is
-- evaluated once however many events point at it. Existing messages count as read.
ALTER TABLE conversations ADD COLUMN automation_seq INTEGER NOT NULL DEFAULT 0;
UPDATE conversations SET automation_seq = last_seq WHERE kind IN ('channel', 'support');
