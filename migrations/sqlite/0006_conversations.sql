-- Conversations (SPEC §10). Every message belongs to one: a direct conversation is the pair of two
-- users (their ids in `direct_low` < `direct_high` order, unique), a group has a title and
-- members with roles. Each existing direct pair gets its conversation, whose id is the pair's
-- first message id (a UUIDv7, so conversations order by when they began), and both users as
-- members. No foreign keys to users, as for messages: a deleted account's conversations stay
-- readable by the other side.
CREATE TABLE conversations (
    id          BLOB PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,
    title       TEXT,
    direct_low  BLOB,
    direct_high BLOB,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX conversations_direct ON conversations (direct_low, direct_high);

-- A member's role (`owner`, `admin`, `member`; `member` in direct conversations), when they
-- joined, their read pointer (it only moves forward) and whether they muted the conversation.
CREATE TABLE conversation_members (
    conversation_id      BLOB NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id              BLOB NOT NULL,
    role                 TEXT NOT NULL,
    joined_at            BIGINT NOT NULL,
    last_read_message_id BLOB,
    last_read_at         BIGINT,
    muted                BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_user ON conversation_members (user_id);

INSERT INTO conversations (id, kind, direct_low, direct_high, created_at, updated_at)
SELECT MIN(id), 'direct', MIN(sender_id, recipient_id), MAX(sender_id, recipient_id),
       MIN(created_at), MAX(created_at)
FROM messages
GROUP BY MIN(sender_id, recipient_id), MAX(sender_id, recipient_id);

INSERT INTO conversation_members (conversation_id, user_id, role, joined_at)
SELECT id, direct_low, 'member', created_at FROM conversations
UNION
SELECT id, direct_high, 'member', created_at FROM conversations;

-- SQLite cannot drop a NOT NULL in place (a group message has no recipient): the table is made
-- again with the new columns, every row copied with its conversation, and its indexes rebuilt.
CREATE TABLE messages_new (
    id              BLOB PRIMARY KEY NOT NULL,
    conversation_id BLOB NOT NULL,
    kind            TEXT NOT NULL DEFAULT 'text',
    sender_id       BLOB NOT NULL,
    recipient_id    BLOB,
    content         TEXT NOT NULL,
    client_id       TEXT,
    reply_to_id     BLOB,
    mentions        TEXT NOT NULL DEFAULT '[]',
    system          TEXT,
    created_at      BIGINT NOT NULL,
    edited_at       BIGINT,
    deleted_at      BIGINT,
    delivered_at    BIGINT,
    read_at         BIGINT
);
INSERT INTO messages_new (id, conversation_id, kind, sender_id, recipient_id, content, client_id,
                          created_at, delivered_at, read_at)
SELECT m.id, c.id, 'text', m.sender_id, m.recipient_id, m.content, m.client_id, m.created_at,
       m.delivered_at, m.read_at
FROM messages m
JOIN conversations c ON c.direct_low = MIN(m.sender_id, m.recipient_id)
                    AND c.direct_high = MAX(m.sender_id, m.recipient_id);
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE UNIQUE INDEX messages_sender_client_id ON messages (sender_id, client_id) WHERE client_id IS NOT NULL;
CREATE INDEX messages_sender_recipient ON messages (sender_id, recipient_id, id);
CREATE INDEX messages_recipient ON messages (recipient_id, id);
CREATE INDEX messages_conversation ON messages (conversation_id, id);

-- A direct member's read pointer: the last message they had read.
UPDATE conversation_members SET
    last_read_message_id = (SELECT MAX(m.id) FROM messages m
                            WHERE m.conversation_id = conversation_members.conversation_id
                              AND m.recipient_id = conversation_members.user_id
                              AND m.read_at IS NOT NULL),
    last_read_at = (SELECT MAX(m.read_at) FROM messages m
                    WHERE m.conversation_id = conversation_members.conversation_id
                      AND m.recipient_id = conversation_members.user_id
                      AND m.read_at IS NOT NULL);
