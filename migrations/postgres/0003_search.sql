-- Full-text search over message text. The 'simple' configuration (no stemming, no stop words)
-- treats every language alike; unaccent is not assumed to be installed.
ALTER TABLE messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', coalesce(text, ''))) STORED;
CREATE INDEX messages_search ON messages USING gin (search);
