-- The twin of ../sqlite/0007_mentions_and_notifications.sql, which explains
-- it: whom each message mentioned (`user_id` 0 for @channel), who may
-- notify a whole room, and each member's notification setting.

CREATE TABLE mentions (
    chatroom_id BIGINT NOT NULL REFERENCES chatrooms (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    author_id   BIGINT NOT NULL,
    PRIMARY KEY (chatroom_id, user_id, seq)
);
CREATE INDEX mentions_message ON mentions (chatroom_id, seq);

ALTER TABLE chatrooms ADD COLUMN room_mentions TEXT NOT NULL DEFAULT 'everyone';
UPDATE chatrooms SET room_mentions = 'admins' WHERE lower(name) = 'general';

ALTER TABLE memberships ADD COLUMN notify TEXT NOT NULL DEFAULT 'default';
