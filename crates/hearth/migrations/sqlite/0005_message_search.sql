-- Full-text search over messages. A trigram index finds any part of a word
-- and text without spaces between words (Chinese, Japanese), which a word
-- tokenizer does not; `db::search` turns a query into trigram phrases, and
-- matches words shorter than three characters with LIKE.
--
-- The index holds no copy of the text (`content=messages`): triggers keep it
-- in step with every insert, edit and deletion, inside the same transaction.
-- A deleted message's text is erased, so it drops out of the index.
CREATE VIRTUAL TABLE message_search USING fts5(
    content,
    content = 'messages',
    content_rowid = 'id',
    tokenize = 'trigram'
);

CREATE TRIGGER message_search_insert AFTER INSERT ON messages BEGIN
    INSERT INTO message_search (rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER message_search_delete AFTER DELETE ON messages BEGIN
    INSERT INTO message_search (message_search, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER message_search_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO message_search (message_search, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO message_search (rowid, content) VALUES (new.id, new.content);
END;

-- Messages stored before this migration.
INSERT INTO message_search (message_search) VALUES ('rebuild');
