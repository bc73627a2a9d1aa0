-- Push subscriptions: where a device wants notifications while it is not connected. A Web Push
-- subscription (RFC 8030/8291) or a gateway's webhook (for FCM/APNs), bound to the session
-- (device) that made it; one row per endpoint.
CREATE TABLE push_subscriptions (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('webpush', 'webhook')),
    endpoint    TEXT NOT NULL UNIQUE,
    -- Web Push: the user agent's P-256 key and auth secret (base64url).
    p256dh      TEXT,
    auth        TEXT,
    -- Webhook: the gateway's token, sealed with the server secret.
    token       TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);

-- A notification waiting to go out: one per subscription and conversation at most, so a burst
-- of messages is one notification (its job reads what is unread when it runs).
CREATE TABLE push_pending (
    subscription_id  TEXT NOT NULL REFERENCES push_subscriptions (id) ON DELETE CASCADE,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, conversation_id)
);

-- How far the push follower has read the change log (one row).
CREATE TABLE push_cursor (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    txid  BIGINT NOT NULL,
    pos   BIGINT NOT NULL
);

-- Whether notifications show the sender and a preview (1) or only "New message" (0).
ALTER TABLE users ADD COLUMN push_previews BIGINT NOT NULL DEFAULT 1;
