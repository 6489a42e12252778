-- The twin of ../sqlite/0002_room_keys_and_activity.sql, which explains it:
-- a folded-name key with a unique index, filled in by the app, and the time
-- of each room's newest message for the sidebar.
ALTER TABLE chatrooms ADD COLUMN name_key TEXT;
DROP INDEX chatrooms_name_key;
CREATE UNIQUE INDEX chatrooms_name_key_folded ON chatrooms (name_key);

ALTER TABLE chatrooms ADD COLUMN active_at BIGINT NOT NULL DEFAULT 0;
UPDATE chatrooms SET active_at = COALESCE(
    (SELECT MAX(created_at) FROM messages WHERE messages.chatroom_id = chatrooms.id),
    created_at);
CREATE INDEX chatrooms_active_at ON chatrooms (active_at);
