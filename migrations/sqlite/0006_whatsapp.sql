-- The WhatsApp Business Cloud API bridge: channels (connected numbers), leads (external
-- contacts), channel conversations, provider ids and statuses of messages, the raw webhook
-- bodies, and message templates.

CREATE TABLE channels (
    id                    TEXT PRIMARY KEY,
    workspace_id          TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind                  TEXT NOT NULL DEFAULT 'whatsapp' CHECK (kind IN ('whatsapp')),
    name                  TEXT,
    phone_number_id       TEXT NOT NULL UNIQUE,
    display_phone_number  TEXT,
    waba_id               TEXT,
    -- Secrets, sealed with the server key (ChaCha20-Poly1305); never returned.
    access_token          TEXT,
    app_secret            TEXT,
    verify_token          TEXT,
    graph_base_url        TEXT NOT NULL,
    api_version           TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);
CREATE INDEX channels_workspace ON channels (workspace_id);

-- External contacts. Stages, tags, attributes and opt-in are there for the inbox to use.
CREATE TABLE leads (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    channel_id    TEXT REFERENCES channels (id) ON DELETE SET NULL,
    wa_id         TEXT NOT NULL,
    name          TEXT,
    stage         TEXT NOT NULL DEFAULT 'new',
    tags          TEXT NOT NULL DEFAULT '[]',
    attributes    TEXT NOT NULL DEFAULT '{}',
    opted_in_at   INTEGER,
    assignee_id   TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (workspace_id, wa_id)
);

-- A channel conversation is one (channel, lead) pair, with an inbox status and an assignee.
ALTER TABLE conversations ADD COLUMN channel_id TEXT REFERENCES channels (id) ON DELETE SET NULL;
ALTER TABLE conversations ADD COLUMN lead_id TEXT REFERENCES leads (id) ON DELETE SET NULL;
ALTER TABLE conversations ADD COLUMN channel_key TEXT;
ALTER TABLE conversations ADD COLUMN inbox_status TEXT CHECK (inbox_status IN ('open', 'pending', 'closed'));
ALTER TABLE conversations ADD COLUMN assignee_id TEXT REFERENCES users (id) ON DELETE SET NULL;
-- The customer's last message: the 24-hour customer-service window runs from it.
ALTER TABLE conversations ADD COLUMN last_inbound_at INTEGER;
CREATE UNIQUE INDEX conversations_channel_key ON conversations (channel_key) WHERE channel_key IS NOT NULL;

-- The provider's id (wamid) and status of channel messages, and the error of a failed one.
ALTER TABLE messages ADD COLUMN external_id TEXT;
ALTER TABLE messages ADD COLUMN external_status TEXT;
ALTER TABLE messages ADD COLUMN external_error TEXT;
CREATE UNIQUE INDEX messages_external ON messages (external_id) WHERE external_id IS NOT NULL;

-- Every status the provider reported, in arrival order, also for ids we do not know.
CREATE TABLE message_statuses (
    id           TEXT PRIMARY KEY,
    external_id  TEXT NOT NULL,
    message_id   TEXT REFERENCES messages (id) ON DELETE CASCADE,
    status       TEXT NOT NULL,
    at           INTEGER NOT NULL,
    raw          TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (external_id, status, at)
);
CREATE INDEX message_statuses_message ON message_statuses (message_id);

-- Webhook bodies exactly as received, stored before the 200; a job processes each.
CREATE TABLE webhook_events (
    id            TEXT PRIMARY KEY,
    source        TEXT NOT NULL CHECK (source IN ('webhook', 'import')),
    body          TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    processed_at  INTEGER,
    error         TEXT
);

CREATE TABLE templates (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    channel_id    TEXT REFERENCES channels (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    language      TEXT NOT NULL,
    category      TEXT NOT NULL,
    components    TEXT NOT NULL DEFAULT '[]',
    status        TEXT NOT NULL DEFAULT 'approved',
    external_id   TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (workspace_id, name, language)
);
