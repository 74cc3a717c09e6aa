-- Editing, deleting and reacting (SPEC §11). A message's reactions live on its row as JSON text,
-- `[{"emoji": "👍", "userIds": ["…"]}]` in order of first use (NULL: none), so every read of a
-- message carries them without a join; a reaction changes them under the row's lock. `changed_at`
-- is the time of the latest edit, deletion or reaction change (NULL: never changed); `sync`
-- reads the changes after a cursor through the partial index, which holds changed rows only and
-- so costs nothing on a send.
ALTER TABLE messages ADD COLUMN reactions TEXT;
ALTER TABLE messages ADD COLUMN changed_at BIGINT;
CREATE INDEX messages_changed ON messages (conversation_id, changed_at) WHERE changed_at IS NOT NULL;
