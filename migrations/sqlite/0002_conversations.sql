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
    last_seq          INTEGER NOT NULL DEFAULT 0,
    last_activity_at  INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX conversations_workspace ON conversations (workspace_id);

CREATE TABLE conversation_members (
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role             TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at        INTEGER NOT NULL,
    -- Messages with seq > joined_seq are visible to the member ...
    joined_seq       INTEGER NOT NULL DEFAULT 0,
    -- ... up to left_seq once they left or were removed (NULL while a current member);
    -- left_pos is the change-log position of their removal.
    left_at          INTEGER,
    left_seq         INTEGER,
    left_pos         INTEGER,
    delivered_seq    INTEGER NOT NULL DEFAULT 0,
    read_seq         INTEGER NOT NULL DEFAULT 0,
    muted_until      INTEGER,
    archived         INTEGER NOT NULL DEFAULT 0,
    pinned           INTEGER NOT NULL DEFAULT 0,
    request_state    TEXT NOT NULL DEFAULT 'accepted' CHECK (request_state IN ('accepted', 'pending', 'declined')),
    PRIMARY KEY (conversation_id, user_id),
    CHECK (delivered_seq >= read_seq)
);
CREATE INDEX conversation_members_user ON conversation_members (user_id);

CREATE TABLE messages (
    id               TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq              INTEGER NOT NULL,
    sender_type      TEXT NOT NULL CHECK (sender_type IN ('user', 'lead', 'system')),
    sender_id        TEXT,
    client_msg_id    TEXT,
    type             TEXT NOT NULL,
    text             TEXT,
    media_id         TEXT,
    reply_to_id      TEXT,
    forwarded        INTEGER NOT NULL DEFAULT 0,
    -- Type-specific data as JSON: location, contact, system event, interactive...
    payload          TEXT,
    edited_at        INTEGER,
    deleted_at       INTEGER,
    created_at       INTEGER NOT NULL,
    UNIQUE (conversation_id, seq),
    UNIQUE (sender_id, client_msg_id)
);

-- Earlier texts of edited messages; erased with the message.
CREATE TABLE message_edits (
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    text        TEXT NOT NULL,
    replaced_at INTEGER NOT NULL
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
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (message_id, reactor_type, reactor_id)
);

-- Every forward move of a member's delivered/read position, with its time: the per-message
-- deliveredAt/readAt of receipts.
CREATE TABLE receipt_moves (
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('delivered', 'read')),
    up_to_seq        INTEGER NOT NULL,
    at               INTEGER NOT NULL
);
CREATE INDEX receipt_moves_conversation ON receipt_moves (conversation_id, kind, up_to_seq);

-- The change log behind sync. Position order is commit order here (one writer); PostgreSQL
-- adds the writing transaction's id (see its migration).
CREATE TABLE changes (
    pos              INTEGER PRIMARY KEY AUTOINCREMENT,
    txid             INTEGER NOT NULL DEFAULT 0,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- NULL: for every member; else only for this user (their settings, their request state).
    user_id          TEXT,
    kind             TEXT NOT NULL,
    message_id       TEXT,
    -- The message's seq (message changes) or the receipt's up-to seq (status changes).
    seq              INTEGER,
    -- Whose receipt moved (status changes).
    actor_id         TEXT,
    status           TEXT,
    created_at       INTEGER NOT NULL
);
CREATE INDEX changes_conversation ON changes (conversation_id, txid, pos);
