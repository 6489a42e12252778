-- Who may read a room, direct conversations, archiving, the instance's
-- admin, read cursors, and everyone in #general.

-- `kind` says who may read a room: 'public' (anyone signed in; joining is
-- implicit on a first post), 'private' (its members only) or 'direct' (a
-- conversation between its members, found by `direct_key`). Every room
-- before this migration is public.
ALTER TABLE chatrooms ADD COLUMN kind TEXT NOT NULL DEFAULT 'public';
-- Who created the room; NULL for rooms older than this migration and for
-- "general".
ALTER TABLE chatrooms ADD COLUMN created_by BIGINT REFERENCES users (id);
-- When the room was archived (Unix ms): it is read-only and listed nowhere.
ALTER TABLE chatrooms ADD COLUMN archived_at BIGINT;
-- A direct conversation's members' ids, ascending, joined by ',': one
-- conversation per set of people. NULL for other rooms (NULLs never collide).
ALTER TABLE chatrooms ADD COLUMN direct_key TEXT;
CREATE UNIQUE INDEX chatrooms_direct_key ON chatrooms (direct_key);

-- 'admin' may rename and archive any room; the first user of an instance
-- is its admin.
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
UPDATE users SET role = 'admin' WHERE id = (SELECT MIN(id) FROM users);

-- Each member's read cursor: the `seq` of the last event of the room they
-- have read. Unread counts are the room's events after it.
ALTER TABLE memberships ADD COLUMN last_read_seq BIGINT NOT NULL DEFAULT 0;

-- Everyone is in #general: existing users join it now, new ones when they
-- sign up (`db::users::insert`).
INSERT INTO memberships (chatroom_id, user_id, joined_at)
SELECT c.id, u.id, u.created_at FROM users u JOIN chatrooms c ON lower(c.name) = 'general'
WHERE true
ON CONFLICT (chatroom_id, user_id) DO NOTHING;

-- Existing members have read everything: no room starts with a backlog of
-- unread messages from before unread counts existed.
UPDATE memberships SET last_read_seq =
    (SELECT last_seq FROM chatrooms WHERE chatrooms.id = memberships.chatroom_id);
