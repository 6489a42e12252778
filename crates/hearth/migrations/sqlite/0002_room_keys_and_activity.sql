-- Room names are unique by their full Unicode case folding, not by SQLite's
-- lower(), which folds only ASCII ("Straße" and "STRASSE", "Σ" and "σ" were
-- two rooms). `name_key` holds the folded name, computed by the app
-- (`domain::RoomName::key`); rows older than this migration get theirs from
-- `db::chatrooms::backfill_name_keys` at start, which is why the column may
-- be NULL here (NULLs never collide in a unique index).
ALTER TABLE chatrooms ADD COLUMN name_key TEXT;
DROP INDEX chatrooms_name_key;
CREATE UNIQUE INDEX chatrooms_name_key_folded ON chatrooms (name_key);

-- When the room's newest message was stored (Unix ms; 0 for none): the
-- sidebar lists the most recently active rooms, not every room.
ALTER TABLE chatrooms ADD COLUMN active_at BIGINT NOT NULL DEFAULT 0;
UPDATE chatrooms SET active_at = COALESCE(
    (SELECT MAX(created_at) FROM messages WHERE messages.chatroom_id = chatrooms.id),
    created_at);
CREATE INDEX chatrooms_active_at ON chatrooms (active_at);
