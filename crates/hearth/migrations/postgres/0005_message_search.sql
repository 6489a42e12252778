-- The twin of ../sqlite/0005_message_search.sql: a trigram index over the
-- messages' text, which finds any part of a word and text without spaces
-- (Chinese, Japanese). PostgreSQL keeps it in step with every change by
-- itself. pg_trgm ships with PostgreSQL (contrib); creating the extension
-- needs a role allowed to (the database owner on PostgreSQL 13 and later).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX messages_content_trgm ON messages USING gin (content gin_trgm_ops);
