-- The team inbox and support desk: support conversations, leads as any external contact,
-- pipelines, tags, attribute definitions, agents' availability and capacity, notes, canned
-- responses, the audit log and lead imports.

ALTER TABLE conversations DROP CONSTRAINT conversations_kind_check;
ALTER TABLE conversations ADD CONSTRAINT conversations_kind_check
    CHECK (kind IN ('direct', 'group', 'channel', 'support'));
ALTER TABLE leads ALTER COLUMN wa_id DROP NOT NULL;

-- Leads: any external contact, not only WhatsApp customers. A lead may have a phone (its
-- WhatsApp id is the number's digits, unique per workspace), an app user (the support desk's
-- customer), an email; an opt-in status with its time and source. Tags live in their own table.
ALTER TABLE leads ADD COLUMN user_id TEXT REFERENCES users (id) ON DELETE SET NULL;
ALTER TABLE leads ADD COLUMN email TEXT;
ALTER TABLE leads ADD COLUMN opt_in_status TEXT NOT NULL DEFAULT 'unknown'
    CHECK (opt_in_status IN ('opted_in', 'opted_out', 'unknown'));
ALTER TABLE leads ADD COLUMN opt_in_source TEXT
    CHECK (opt_in_source IN ('whatsapp', 'import', 'form', 'agent'));
ALTER TABLE leads DROP COLUMN tags;
CREATE UNIQUE INDEX leads_user ON leads (workspace_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX leads_updated ON leads (workspace_id, updated_at, id);
CREATE INDEX leads_stage ON leads (workspace_id, stage);
CREATE INDEX leads_assignee ON leads (workspace_id, assignee_id);

-- The workspace's pipeline, in order; a workspace without rows uses new, qualified, won, lost.
CREATE TABLE lead_stages (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    position      INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, name)
);

-- Custom attributes the workspace defines, so that a UI can show and edit them.
CREATE TABLE lead_attributes (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    label         TEXT NOT NULL,
    type          TEXT NOT NULL CHECK (type IN ('text', 'number', 'boolean', 'date', 'list')),
    options       TEXT,
    position      INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, key)
);

CREATE TABLE tags (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    color         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE lead_tags (
    lead_id  TEXT NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    tag_id   TEXT NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (lead_id, tag_id)
);
CREATE INDEX lead_tags_tag ON lead_tags (tag_id, lead_id);

-- Inbox conversations: snoozed until a time (then open again), and the time inbox views sort
-- by: the customer's last message, else when the conversation opened (never NULL for them, so
-- a view walks an index). The counts read the first index alone.
ALTER TABLE conversations ADD COLUMN snoozed_until BIGINT;
ALTER TABLE conversations ADD COLUMN inbox_at BIGINT;
UPDATE conversations SET inbox_at = COALESCE(last_inbound_at, created_at) WHERE kind = 'channel';
CREATE INDEX conversations_inbox ON conversations (workspace_id, inbox_status, assignee_id)
    WHERE inbox_status IS NOT NULL;
CREATE INDEX conversations_inbox_at ON conversations (workspace_id, inbox_at, id)
    WHERE inbox_at IS NOT NULL;

-- An agent's inbox settings in a workspace: availability (set by the agent), capacity (open
-- conversations auto-assignment may give them; NULL: no limit) and when they were last given
-- one (round-robin takes the longest waiting).
CREATE TABLE agent_settings (
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    availability      TEXT NOT NULL DEFAULT 'online' CHECK (availability IN ('online', 'busy', 'away')),
    capacity          INTEGER,
    auto_assign       INTEGER NOT NULL DEFAULT 1,
    last_assigned_at  BIGINT NOT NULL DEFAULT 0,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);

-- Internal notes and the inbox's activity lines (assigned, status changed, snoozed): agents
-- only, never in a customer's sync, search or channel.
CREATE TABLE notes (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    author_id        TEXT REFERENCES users (id) ON DELETE SET NULL,
    kind             TEXT NOT NULL DEFAULT 'note' CHECK (kind IN ('note', 'activity')),
    text             TEXT NOT NULL,
    mentions         TEXT NOT NULL DEFAULT '[]',
    details          TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX notes_conversation ON notes (conversation_id, id);

CREATE TABLE canned_responses (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    short_code    TEXT NOT NULL,
    text          TEXT NOT NULL,
    created_by    TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (workspace_id, short_code)
);

-- The audit log: append-only (triggers refuse changes). Actors and workspaces are plain ids,
-- so that neither erasing a user nor anything else takes a row away.
CREATE TABLE audit_log (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    at           BIGINT NOT NULL,
    actor_id     TEXT,
    action       TEXT NOT NULL,
    target_type  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    details      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_workspace ON audit_log (workspace_id, id);

-- Lead imports: how far an import has come (`position` is the byte offset of the next row,
-- `line` its line) and what it did. Each chunk of rows commits with the progress it claims, so
-- a restart goes on where it stopped and no chunk is written twice. The upload itself is kept
-- apart until the import ends (a row rewritten with every chunk must stay small).
CREATE TABLE lead_imports (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    created_by    TEXT REFERENCES users (id) ON DELETE SET NULL,
    status        TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    on_duplicate  TEXT NOT NULL CHECK (on_duplicate IN ('update', 'skip')),
    position      BIGINT NOT NULL DEFAULT 0,
    line          BIGINT NOT NULL DEFAULT 1,
    imported      BIGINT NOT NULL DEFAULT 0,
    updated       BIGINT NOT NULL DEFAULT 0,
    skipped       BIGINT NOT NULL DEFAULT 0,
    rejected      BIGINT NOT NULL DEFAULT 0,
    -- The first rejected rows with their line and reason.
    errors        TEXT NOT NULL DEFAULT '[]',
    error         TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE lead_import_files (
    import_id  TEXT PRIMARY KEY REFERENCES lead_imports (id) ON DELETE CASCADE,
    body       TEXT NOT NULL
);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
