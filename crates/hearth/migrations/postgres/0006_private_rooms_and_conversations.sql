-- The twin of ../sqlite/0006_private_rooms_and_conversations.sql, which
-- explains it: who may read a room (`kind`), its creator, archiving, direct
-- conversations (`direct_key`), the instance's admin, read cursors, and
-- everyone in #general.
ALTER TABLE chatrooms ADD COLUMN kind TEXT NOT NULL DEFAULT 'public';
ALTER TABLE chatrooms ADD COLUMN created_by BIGINT REFERENCES users (id);
ALTER TABLE chatrooms ADD COLUMN archived_at BIGINT;
ALTER TABLE chatrooms ADD COLUMN direct_key TEXT;
CREATE UNIQUE INDEX chatrooms_direct_key ON chatrooms (direct_key);

ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
UPDATE users SET role = 'admin' WHERE id = (SELECT MIN(id) FROM users);

ALTER TABLE memberships ADD COLUMN last_read_seq BIGINT NOT NULL DEFAULT 0;

INSERT INTO memberships (chatroom_id, user_id, joined_at)
SELECT c.id, u.id, u.created_at FROM users u JOIN chatrooms c ON lower(c.name) = 'general'
ON CONFLICT (chatroom_id, user_id) DO NOTHING;

UPDATE memberships SET last_read_seq =
    (SELECT last_seq FROM chatrooms WHERE chatrooms.id = memberships.chatroom_id);
