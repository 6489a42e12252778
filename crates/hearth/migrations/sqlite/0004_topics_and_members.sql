-- A room's topic, and who is in which room.

-- The topic is one line under the room's name (`domain::RoomTopic`: trimmed,
-- at most 250 characters, no control or bidi characters); '' for none.
-- `topic_key` is the topic case-folded by the app (`domain::fold_room_name`,
-- the folding of `name_key`), so the directory's search folds names and
-- topics alike on both engines; '' for rooms older than this migration is
-- right, as their topic is ''.
ALTER TABLE chatrooms ADD COLUMN topic TEXT NOT NULL DEFAULT '';
ALTER TABLE chatrooms ADD COLUMN topic_key TEXT NOT NULL DEFAULT '';

-- Members of each room. Posting in a room makes the poster a member (the
-- message writer adds them in the transaction that stores the message), and
-- so does creating one. The primary key serves the directory's grouped count
-- by room; `memberships_user_id` serves "the rooms of a user".
CREATE TABLE memberships (
    chatroom_id BIGINT NOT NULL REFERENCES chatrooms (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at   BIGINT NOT NULL,
    PRIMARY KEY (chatroom_id, user_id)
);
CREATE INDEX memberships_user_id ON memberships (user_id);

-- Existing rooms: every user who posted in one is a member since their first
-- post there, and nobody else (room creators were not recorded before).
INSERT INTO memberships (chatroom_id, user_id, joined_at)
SELECT chatroom_id, user_id, MIN(created_at) FROM messages GROUP BY chatroom_id, user_id;
