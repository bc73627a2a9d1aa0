-- Analytics: facts written in the transaction of what they record (so they cannot drift from
-- the data), read by `/api/v1/analytics`.

-- An inbox conversation's current opening: when it began (NULL: never opened), since when its
-- customer waits for an answer (NULL: not waiting), and whether an agent answered since it
-- opened (the next answer is the first response otherwise).
ALTER TABLE conversations ADD COLUMN opened_at INTEGER;
ALTER TABLE conversations ADD COLUMN waiting_since INTEGER;
ALTER TABLE conversations ADD COLUMN answered INTEGER NOT NULL DEFAULT 0;

-- What happened in the inbox, one row each: a conversation opened (first time) or reopened
-- (after it was closed), closed (`since`: when that opening began; `agent_id`: its assignee),
-- assigned to `agent_id`, or a customer's wait answered by `agent_id` (`since`: the customer's
-- first unanswered message; `first`: the first answer of its opening). Append-only.
CREATE TABLE inbox_events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    conversation_id  TEXT NOT NULL,
    channel_id       TEXT,
    kind             TEXT NOT NULL CHECK (kind IN ('opened', 'reopened', 'closed', 'assigned', 'response')),
    agent_id         TEXT,
    at               INTEGER NOT NULL,
    since            INTEGER,
    first            INTEGER NOT NULL DEFAULT 0
);
-- Reports read one kind over a range; the index carries every column they read.
CREATE INDEX inbox_events_kind ON inbox_events (workspace_id, kind, first, at, since, agent_id, channel_id);

-- Messages in inbox conversations per quarter hour (any timezone's days are whole quarter
-- hours), channel ('' for the support desk) and direction; and agents' messages per quarter
-- hour and agent. Each row moves in the transaction that writes its messages.
CREATE TABLE inbox_traffic (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    bucket        INTEGER NOT NULL,
    channel_id    TEXT NOT NULL,
    direction     TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    messages      INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, bucket, channel_id, direction)
) WITHOUT ROWID;
CREATE TABLE inbox_replies (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    bucket        INTEGER NOT NULL,
    agent_id      TEXT NOT NULL,
    messages      INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, bucket, agent_id)
) WITHOUT ROWID;

-- What the data already holds: the openings of today's inbox conversations and their traffic.
-- (Closings, assignments and answers before this version were not recorded as such.)
UPDATE conversations SET opened_at = created_at
 WHERE kind IN ('channel', 'support') AND inbox_status IN ('open', 'pending');
INSERT INTO inbox_events (workspace_id, conversation_id, channel_id, kind, at)
SELECT workspace_id, id, channel_id, 'opened', created_at FROM conversations
 WHERE kind IN ('channel', 'support') AND inbox_status IS NOT NULL;
INSERT INTO inbox_traffic (workspace_id, bucket, channel_id, direction, messages)
SELECT c.workspace_id, m.created_at - m.created_at % 900000, COALESCE(c.channel_id, ''),
       CASE WHEN m.sender_type = 'lead' OR (c.kind = 'support' AND m.sender_id = c.created_by)
            THEN 'in' ELSE 'out' END,
       COUNT(*)
  FROM messages m JOIN conversations c ON c.id = m.conversation_id
 WHERE c.kind IN ('channel', 'support')
 GROUP BY 1, 2, 3, 4;
INSERT INTO inbox_replies (workspace_id, bucket, agent_id, messages)
SELECT c.workspace_id, m.created_at - m.created_at % 900000, m.sender_id, COUNT(*)
  FROM messages m JOIN conversations c ON c.id = m.conversation_id
 WHERE c.kind IN ('channel', 'support') AND m.sender_type = 'user' AND m.sender_id IS NOT NULL
   AND NOT (c.kind = 'support' AND m.sender_id = c.created_by)
 GROUP BY 1, 2, 3;
