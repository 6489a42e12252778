-- Hearth's schema on SQLite. The PostgreSQL twin in ../postgres must stay
-- equivalent: same tables, columns, keys and indexes. Times are Unix
-- milliseconds in BIGINT columns, so both engines store them alike.

-- People. `email` is stored lower-cased, so its uniqueness ignores case;
-- nicknames are unique ignoring case too.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE,
    nickname      TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL
);
CREATE UNIQUE INDEX users_nickname_key ON users (lower(nickname));

-- Server-side sessions. Only a SHA-256 of the cookie's token is stored, so a
-- copy of the database cannot be used to sign in.
CREATE TABLE sessions (
    token_hash TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);

-- Rooms. `last_seq` is the sequence of the room's newest message: every new
-- message takes last_seq + 1 in the same transaction that stores it.
CREATE TABLE chatrooms (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    last_seq   BIGINT  NOT NULL DEFAULT 0,
    created_at BIGINT  NOT NULL
);
CREATE UNIQUE INDEX chatrooms_name_key ON chatrooms (lower(name));

-- Messages, numbered 1, 2, 3 … within their room by `seq`.
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    chatroom_id BIGINT  NOT NULL REFERENCES chatrooms (id) ON DELETE CASCADE,
    seq         BIGINT  NOT NULL,
    user_id     BIGINT  NOT NULL REFERENCES users (id),
    content     TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    UNIQUE (chatroom_id, seq)
);
