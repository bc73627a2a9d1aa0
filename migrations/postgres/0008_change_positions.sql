-- The real-time dispatcher and sync start read the change log from a position on, across all
-- conversations: a row comparison on (txid, pos) seeks this index instead of scanning the log.
CREATE INDEX changes_position ON changes (txid, pos);
