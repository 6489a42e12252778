-- The search index leaves this file. It was kept in step by triggers, inside
-- the transaction of every post: a third of the message writer's time, so
-- the bound on how many messages a second SQLite takes (BENCHMARKS.md,
-- "Writes: the search index off the commit"). It now lives in a file of its
-- own beside this one (`<name>-search.db`), written by a thread of its own
-- that follows `messages` and `message_events` by id after they commit
-- (`db::search_index`), and is built again there from these tables, so
-- nothing is lost by dropping it here.
DROP TRIGGER message_search_insert;
DROP TRIGGER message_search_delete;
DROP TRIGGER message_search_update;
DROP TABLE message_search;

-- Which database the index file belongs to: an index file left beside a
-- database it was not built from (a restored backup, a copy made with
-- `hearth copy`) is emptied and built again rather than trusted.
CREATE TABLE database_identity (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    key TEXT    NOT NULL
);
INSERT INTO database_identity (id, key) VALUES (1, lower(hex(randomblob(16))));
