-- Conversations, members, messages, reactions, receipts and the change log behind sync.

CREATE TABLE conversations (
    id                TEXT PRIMARY KEY,
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind              TEXT NOT NULL CHECK (kind IN ('direct', 'group', 'channel')),
    title             TEXT,
    description       TEXT,
    avatar_media_id   TEXT,
    created_by        TEXT REFERENCES users (id) ON DELETE SET NULL,
    -- For direct conversations: workspace and the two user ids in order, so that two users
    -- creating their conversation at the same instant end with one row.
    direct_key        TEXT UNIQUE,
    last_seq          BIGINT NOT NULL DEFAULT 0,
    last_activity_at  BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX conversations_workspace ON conversations (workspace_id);

CREATE TABLE conversation_members (
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role             TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at        BIGINT NOT NULL,
    -- Messages with seq > joined_seq are visible to the member ...
    joined_seq       BIGINT NOT NULL DEFAULT 0,
    -- ... up to left_seq once they left or were removed (NULL while a current member);
    -- left_pos is the change-log position of their removal.
    left_at          BIGINT,
    left_seq         BIGINT,
    left_pos         BIGINT,
    delivered_seq    BIGINT NOT NULL DEFAULT 0,
    read_seq         BIGINT NOT NULL DEFAULT 0,
    muted_until      BIGINT,
    archived         BIGINT NOT NULL DEFAULT 0,
    pinned           BIGINT NOT NULL DEFAULT 0,
    request_state    TEXT NOT NULL DEFAULT 'accepted' CHECK (request_state IN ('accepted', 'pending', 'declined')),
    PRIMARY KEY (conversation_id, user_id),
    CHECK (delivered_seq >= read_seq)
);
CREATE INDEX conversation_members_user ON conversation_members (user_id);

CREATE TABLE messages (
    id               TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq              BIGINT NOT NULL,
    sender_type      TEXT NOT NULL CHECK (sender_type IN ('user', 'lead', 'system')),
    sender_id        TEXT,
    client_msg_id    TEXT,
    type             TEXT NOT NULL,
    text             TEXT,
    media_id         TEXT,
    reply_to_id      TEXT,
    forwarded        BIGINT NOT NULL DEFAULT 0,
    -- Type-specific data as JSON: location, contact, system event, interactive...
    payload          TEXT,
    edited_at        BIGINT,
    deleted_at       BIGINT,
    created_at       BIGINT NOT NULL,
    UNIQUE (conversation_id, seq),
    UNIQUE (sender_id, client_msg_id)
);

-- Earlier texts of edited messages; erased with the message.
CREATE TABLE message_edits (
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    text        TEXT NOT NULL,
    replaced_at BIGINT NOT NULL
);
CREATE INDEX message_edits_message ON message_edits (message_id);

-- "Delete for me".
CREATE TABLE message_hidden (
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, message_id)
);

CREATE TABLE reactions (
    message_id    TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    reactor_type  TEXT NOT NULL CHECK (reactor_type IN ('user', 'lead')),
    reactor_id    TEXT NOT NULL,
    emoji         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (message_id, reactor_type, reactor_id)
);

-- Every forward move of a member's delivered/read position, with its time: the per-message
-- deliveredAt/readAt of receipts.
CREATE TABLE receipt_moves (
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('delivered', 'read')),
    up_to_seq        BIGINT NOT NULL,
    at               BIGINT NOT NULL
);
CREATE INDEX receipt_moves_conversation ON receipt_moves (conversation_id, kind, up_to_seq);

-- The change log behind sync.
CREATE TABLE changes (
    pos              BIGSERIAL PRIMARY KEY,
    -- The writing transaction: readers only return rows of transactions older than every
    -- running one (pg_snapshot_xmin), ordered by (txid, pos), so a row that commits late can
    -- never fall behind a cursor that already passed it.
    txid             BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- NULL: for every member; else only for this user (their settings, their request state).
    user_id          TEXT,
    kind             TEXT NOT NULL,
    message_id       TEXT,
    -- The message's seq (message changes) or the receipt's up-to seq (status changes).
    seq              BIGINT,
    -- Whose receipt moved (status changes).
    actor_id         TEXT,
    status           TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX changes_conversation ON changes (conversation_id, txid, pos);
