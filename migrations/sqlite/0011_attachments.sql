-- Attachments (SPEC §12). A message keeps its attachment objects as JSON, as it keeps its
-- mentions and reactions, so every read of messages (history, sync, lastMessage) has them
-- without a join; a tombstone empties it.
ALTER TABLE messages ADD COLUMN attachments TEXT;

-- Each tus upload, from its creation to the removal of its files. `received` is the tus offset:
-- every node reads and moves it (a PATCH commits its part only if the offset is still the one
-- it started from), and `parts` lists the objects the received bytes are in, in order (JSON),
-- until the upload completes and they are joined into one file. Uploads name their user and
-- conversation without foreign keys: the sweep removes the files of a user or message that is
-- gone before it removes the row.
CREATE TABLE uploads (
    id              BLOB PRIMARY KEY NOT NULL,
    user_id         BLOB NOT NULL,
    conversation_id BLOB NOT NULL,
    filename        TEXT NOT NULL,
    claimed_type    TEXT NOT NULL,
    size            BIGINT NOT NULL,
    received        BIGINT NOT NULL DEFAULT 0,
    parts           TEXT NOT NULL DEFAULT '[]',
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    -- When the last byte arrived and the file was joined, sniffed and measured.
    completed_at    BIGINT,
    content_type    TEXT,
    width           INTEGER,
    height          INTEGER,
    -- The thumbnail's type (image/jpeg or image/png) when there is one.
    thumbnail_type  TEXT,
    -- When the last uploadProgress went out (at most one a second, on any node).
    progress_at     BIGINT,
    -- The message it is attached to, and its place among that message's attachments.
    message_id      BLOB,
    position        INTEGER
);
CREATE INDEX uploads_by_message ON uploads (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX uploads_unattached ON uploads (expires_at) WHERE message_id IS NULL;
CREATE INDEX uploads_by_user ON uploads (user_id);
