-- Edits and deletions. A message keeps its place (`seq`) when it changes;
-- the change itself takes the room's next `seq` and is recorded in
-- `message_events`, so the room's sequence stays gap-free and a client that
-- catches up from a `seq` learns of every edit and deletion after it, in
-- order (see `db::messages::events_between`).
--
-- A deleted message keeps its row, with its text erased: its `seq` is part
-- of the sequence, and replays tell late clients it is gone.
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN deleted_at BIGINT;

CREATE TABLE message_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    chatroom_id BIGINT  NOT NULL REFERENCES chatrooms (id) ON DELETE CASCADE,
    seq         BIGINT  NOT NULL,
    message_id  BIGINT  NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL CHECK (kind IN ('edited', 'deleted')),
    created_at  BIGINT  NOT NULL,
    UNIQUE (chatroom_id, seq)
);
