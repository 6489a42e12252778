-- Mentions, who may notify a whole room, and each member's notification
-- setting.

-- Whom each message mentioned when it was posted (or last edited): one row
-- per mentioned member, found by `markup::mentions`. `user_id` 0 stands for
-- `@channel` (every member), so a room-wide mention is one row, not one per
-- member; `@here` is one row per member present at the time. Mention
-- counts are the rows after a member's read cursor (`seq`), from others,
-- of messages not deleted. No foreign key on `user_id`, for the 0.
CREATE TABLE mentions (
    chatroom_id BIGINT NOT NULL REFERENCES chatrooms (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    author_id   BIGINT NOT NULL,
    PRIMARY KEY (chatroom_id, user_id, seq)
);
-- An edit replaces its message's rows: found by the message's `seq`.
CREATE INDEX mentions_message ON mentions (chatroom_id, seq);

-- Who may use `@channel` and `@here` in a room: 'everyone' (its members) or
-- 'admins' (the room's creator and the instance's admins). #general, where
-- everyone is, starts limited.
ALTER TABLE chatrooms ADD COLUMN room_mentions TEXT NOT NULL DEFAULT 'everyone';
UPDATE chatrooms SET room_mentions = 'admins' WHERE lower(name) = 'general';

-- What a member's pages notify them of, in a browser notification while
-- the tab is hidden: 'default' (everything in a direct conversation,
-- mentions elsewhere), 'all', 'mentions' or 'nothing'.
ALTER TABLE memberships ADD COLUMN notify TEXT NOT NULL DEFAULT 'default';
