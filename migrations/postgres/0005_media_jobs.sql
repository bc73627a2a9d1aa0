-- Uploaded media and the durable background jobs that process it.

CREATE TABLE media (
    id             TEXT PRIMARY KEY,
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    -- The uploader; NULL for media that came from an external channel.
    owner_id       TEXT REFERENCES users (id) ON DELETE SET NULL,
    -- image | audio | voice | video | document | sticker
    kind           TEXT NOT NULL,
    -- Sniffed from the bytes, never taken from the client.
    content_type   TEXT NOT NULL,
    size           BIGINT NOT NULL,
    sha256         TEXT NOT NULL,
    -- The client's file name, cleaned, for Content-Disposition only (never a path).
    file_name      TEXT,
    storage_key    TEXT NOT NULL,
    width          INTEGER,
    height         INTEGER,
    duration_ms    BIGINT,
    pages          INTEGER,
    thumbnail_key  TEXT,
    -- When dimensions, duration, pages and thumbnail were worked out (NULL while pending).
    analyzed_at    BIGINT,
    text_state     TEXT NOT NULL CHECK (text_state IN ('pending', 'done', 'unavailable', 'failed')),
    text_source    TEXT CHECK (text_source IN ('pdf', 'ocr', 'transcription')),
    text           TEXT,
    created_at     BIGINT NOT NULL
);
CREATE INDEX media_owner ON media (owner_id);
CREATE INDEX media_created ON media (created_at);
CREATE INDEX messages_media ON messages (media_id) WHERE media_id IS NOT NULL;
CREATE INDEX users_avatar ON users (avatar_media_id) WHERE avatar_media_id IS NOT NULL;
CREATE INDEX conversations_avatar ON conversations (avatar_media_id) WHERE avatar_media_id IS NOT NULL;

-- Background work that must survive a restart. A worker claims a due job by setting
-- locked_until (a lease it renews while it works); a job whose lease ran out is claimed again.
-- Done jobs are deleted; jobs that gave up keep failed_at and last_error.
CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    run_at        BIGINT NOT NULL,
    locked_until  BIGINT,
    last_error    TEXT,
    failed_at     BIGINT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs (run_at) WHERE failed_at IS NULL;
