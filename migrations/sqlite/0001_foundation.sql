-- Foundation: workspaces, users, sign-in, contacts, blocks.
-- Ids are TEXT (UUIDv7), times INTEGER milliseconds since the epoch, flags 0/1.

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    is_default  INTEGER NOT NULL DEFAULT 0,
    settings    TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX workspaces_single_default ON workspaces (is_default) WHERE is_default = 1;

CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    display_name       TEXT NOT NULL,
    about              TEXT NOT NULL DEFAULT '',
    avatar_media_id    TEXT,
    phone              TEXT UNIQUE,
    email              TEXT UNIQUE,
    password_hash      TEXT,
    privacy_last_seen  TEXT NOT NULL DEFAULT 'everyone',
    is_platform_admin  INTEGER NOT NULL DEFAULT 0,
    -- 1 while the account was created by an invitation and never signed in.
    is_invited         INTEGER NOT NULL DEFAULT 0,
    last_seen_at       INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX users_display_name ON users (lower(display_name));

CREATE TABLE memberships (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'agent', 'member')),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id     TEXT NOT NULL,
    device_name   TEXT,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE INDEX sessions_user ON sessions (user_id, device_id);

-- One row per refresh token ever issued; the session is the token family.
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- At most one live challenge per phone: a new code replaces the old one.
CREATE TABLE otp_challenges (
    id            TEXT PRIMARY KEY,
    phone         TEXT NOT NULL UNIQUE,
    code_hash     TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    resend_after  INTEGER NOT NULL,
    consumed_at   INTEGER
);

CREATE TABLE password_resets (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX password_resets_user ON password_resets (user_id);

-- The caller's address book; the matched user is derived by joining users.phone.
CREATE TABLE address_book (
    owner_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    phone       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (owner_id, phone)
);
CREATE INDEX address_book_phone ON address_book (phone);

CREATE TABLE blocks (
    blocker_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id);
