-- A provider id (wamid) is looked up within the channel that reported it, never across
-- workspaces: messages are unique per (wamid, conversation) and statuses per channel, so a
-- body signed for one channel cannot touch, shadow or pre-empt another channel's messages.

DROP INDEX messages_external;
CREATE UNIQUE INDEX messages_external ON messages (external_id, conversation_id) WHERE external_id IS NOT NULL;

ALTER TABLE message_statuses ADD COLUMN channel_id TEXT;
UPDATE message_statuses s SET channel_id = c.channel_id
FROM messages m JOIN conversations c ON c.id = m.conversation_id
WHERE m.id = s.message_id;
ALTER TABLE message_statuses DROP CONSTRAINT message_statuses_external_id_status_at_key;
ALTER TABLE message_statuses ADD CONSTRAINT message_statuses_channel_external_status_at
    UNIQUE (channel_id, external_id, status, at);
