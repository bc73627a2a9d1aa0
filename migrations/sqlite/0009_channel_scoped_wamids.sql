-- A provider id (wamid) is looked up within the channel that reported it, never across
-- workspaces: messages are unique per (wamid, conversation) and statuses per channel, so a
-- body signed for one channel cannot touch, shadow or pre-empt another channel's messages.

DROP INDEX messages_external;
CREATE UNIQUE INDEX messages_external ON messages (external_id, conversation_id) WHERE external_id IS NOT NULL;

CREATE TABLE message_statuses_scoped (
    id           TEXT PRIMARY KEY,
    channel_id   TEXT,
    external_id  TEXT NOT NULL,
    message_id   TEXT REFERENCES messages (id) ON DELETE CASCADE,
    status       TEXT NOT NULL,
    at           INTEGER NOT NULL,
    raw          TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (channel_id, external_id, status, at)
);
INSERT INTO message_statuses_scoped (id, channel_id, external_id, message_id, status, at, raw, created_at)
SELECT s.id,
       (SELECT c.channel_id FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.id = s.message_id),
       s.external_id, s.message_id, s.status, s.at, s.raw, s.created_at
FROM message_statuses s;
DROP TABLE message_statuses;
ALTER TABLE message_statuses_scoped RENAME TO message_statuses;
CREATE INDEX message_statuses_message ON message_statuses (message_id);
