-- Direct messages. No foreign keys to users: a deleted account's messages stay readable by the
-- other side. Ids are UUIDv7, so ordering by id is ordering by time.
CREATE TABLE messages (
    id           UUID PRIMARY KEY,
    sender_id    UUID NOT NULL,
    recipient_id UUID NOT NULL,
    content      TEXT NOT NULL,
    client_id    TEXT,
    created_at   BIGINT NOT NULL,
    delivered_at BIGINT,
    read_at      BIGINT
);
CREATE UNIQUE INDEX messages_sender_client_id ON messages (sender_id, client_id) WHERE client_id IS NOT NULL;
CREATE INDEX messages_sender_recipient ON messages (sender_id, recipient_id, id);
CREATE INDEX messages_recipient ON messages (recipient_id, id);
