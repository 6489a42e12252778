-- The twin of ../sqlite/0004_topics_and_members.sql, which explains it: a
-- topic and its folded key on each room, the memberships table, and every
-- poster of a room made a member of it since their first post.
ALTER TABLE chatrooms ADD COLUMN topic TEXT NOT NULL DEFAULT '';
ALTER TABLE chatrooms ADD COLUMN topic_key TEXT NOT NULL DEFAULT '';

CREATE TABLE memberships (
    chatroom_id BIGINT NOT NULL REFERENCES chatrooms (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at   BIGINT NOT NULL,
    PRIMARY KEY (chatroom_id, user_id)
);
CREATE INDEX memberships_user_id ON memberships (user_id);

INSERT INTO memberships (chatroom_id, user_id, joined_at)
SELECT chatroom_id, user_id, MIN(created_at) FROM messages GROUP BY chatroom_id, user_id;
