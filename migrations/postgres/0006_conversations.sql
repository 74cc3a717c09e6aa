-- Conversations (SPEC §10). Every message belongs to one: a direct conversation is the pair of two
-- users (their ids in `direct_low` < `direct_high` order, unique), a group has a title and
-- members with roles. Each existing direct pair gets its conversation, whose id is the pair's
-- first message id (a UUIDv7, so conversations order by when they began), and both users as
-- members. No foreign keys to users, as for messages: a deleted account's conversations stay
-- readable by the other side.
CREATE TABLE conversations (
    id          UUID PRIMARY KEY,
    kind        TEXT NOT NULL,
    title       TEXT,
    direct_low  UUID,
    direct_high UUID,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX conversations_direct ON conversations (direct_low, direct_high);

-- A member's role (`owner`, `admin`, `member`; `member` in direct conversations), when they
-- joined, their read pointer (it only moves forward) and whether they muted the conversation.
CREATE TABLE conversation_members (
    conversation_id      UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id              UUID NOT NULL,
    role                 TEXT NOT NULL,
    joined_at            BIGINT NOT NULL,
    last_read_message_id UUID,
    last_read_at         BIGINT,
    muted                BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_user ON conversation_members (user_id);

INSERT INTO conversations (id, kind, direct_low, direct_high, created_at, updated_at)
SELECT (ARRAY_AGG(id ORDER BY id))[1], 'direct', LEAST(sender_id, recipient_id),
       GREATEST(sender_id, recipient_id), MIN(created_at), MAX(created_at)
FROM messages
GROUP BY LEAST(sender_id, recipient_id), GREATEST(sender_id, recipient_id);

INSERT INTO conversation_members (conversation_id, user_id, role, joined_at)
SELECT id, direct_low, 'member', created_at FROM conversations
UNION
SELECT id, direct_high, 'member', created_at FROM conversations;

ALTER TABLE messages
    ADD COLUMN conversation_id UUID,
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'text',
    ADD COLUMN reply_to_id UUID,
    ADD COLUMN mentions TEXT NOT NULL DEFAULT '[]',
    ADD COLUMN system TEXT,
    ADD COLUMN edited_at BIGINT,
    ADD COLUMN deleted_at BIGINT,
    ALTER COLUMN recipient_id DROP NOT NULL;
UPDATE messages m SET conversation_id = c.id
FROM conversations c
WHERE c.direct_low = LEAST(m.sender_id, m.recipient_id)
  AND c.direct_high = GREATEST(m.sender_id, m.recipient_id);
ALTER TABLE messages ALTER COLUMN conversation_id SET NOT NULL;
CREATE INDEX messages_conversation ON messages (conversation_id, id);

-- A direct member's read pointer: the last message they had read.
UPDATE conversation_members cm SET
    last_read_message_id = r.last_id,
    last_read_at = r.last_at
FROM (SELECT conversation_id, recipient_id, MAX(id::text)::uuid AS last_id, MAX(read_at) AS last_at
      FROM messages WHERE read_at IS NOT NULL
      GROUP BY conversation_id, recipient_id) r
WHERE r.conversation_id = cm.conversation_id AND r.recipient_id = cm.user_id;
