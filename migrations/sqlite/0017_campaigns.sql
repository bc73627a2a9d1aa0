-- Campaigns: a template sent to an audience of opted-in leads on a schedule, throttled per
-- channel, with each recipient's progress.

-- How many messages a second campaigns send through a channel (WhatsApp's Cloud API allows
-- 80 per number by default, more on request), and the time of the next free slot.
ALTER TABLE channels ADD COLUMN send_rate INTEGER NOT NULL DEFAULT 80;
ALTER TABLE channels ADD COLUMN next_send_at INTEGER NOT NULL DEFAULT 0;

CREATE TABLE campaigns (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    channel_id    TEXT REFERENCES channels (id) ON DELETE SET NULL,
    template_id   TEXT REFERENCES templates (id) ON DELETE SET NULL,
    -- JSON: the template's parameters (may name lead fields), the audience filter.
    parameters    TEXT NOT NULL,
    audience      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled')),
    scheduled_at  INTEGER,
    started_at    INTEGER,
    finished_at   INTEGER,
    -- Why a campaign ended early (its channel or template went away).
    error         TEXT,
    created_by    TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX campaigns_workspace ON campaigns (workspace_id, created_at, id);
CREATE INDEX campaigns_due ON campaigns (status, scheduled_at) WHERE status IN ('scheduled', 'running');

-- The audience, written when the campaign starts. A recipient is claimed (its message and send
-- job written) in one transaction; what happens to the message after is read from it.
CREATE TABLE campaign_recipients (
    campaign_id      TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    lead_id          TEXT NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    conversation_id  TEXT REFERENCES conversations (id) ON DELETE SET NULL,
    message_id       TEXT REFERENCES messages (id) ON DELETE SET NULL,
    -- 'waiting' until claimed, then 'queued' (a message and its send job exist) or 'skipped'
    -- (refused before sending: `error` says why).
    state            TEXT NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'queued', 'skipped')),
    error            TEXT,
    send_at          INTEGER,
    PRIMARY KEY (campaign_id, lead_id)
);
CREATE INDEX campaign_recipients_waiting ON campaign_recipients (campaign_id, state, lead_id);
