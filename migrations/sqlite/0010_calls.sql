-- Calls (SPEC §14): each call between two users, with the two devices it connects. Every node
-- reads and moves the same rows, so caller and callee may sit on different nodes, and any node
-- ends a call whose ring timed out or whose device is gone (`*_gone_at`: when its socket went).
CREATE TABLE calls (
    id              BLOB PRIMARY KEY NOT NULL,
    conversation_id BLOB NOT NULL,
    caller_id       BLOB NOT NULL,
    callee_id       BLOB NOT NULL,
    media           TEXT NOT NULL,
    state           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    answered_at     BIGINT,
    ended_at        BIGINT,
    end_reason      TEXT,
    caller_session  BLOB NOT NULL,
    caller_socket   TEXT NOT NULL,
    caller_node     TEXT NOT NULL,
    caller_gone_at  BIGINT,
    callee_session  BLOB,
    callee_socket   TEXT,
    callee_node     TEXT,
    callee_gone_at  BIGINT,
    -- The caller's ICE candidates trickled before the accept, for the callee's device (JSON).
    early_candidates TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX calls_live ON calls (state) WHERE state <> 'ended';

-- Who is in a call now: one row per user, so that two calls can never take the same user, on
-- any node (the primary key decides `user_busy`).
CREATE TABLE call_parties (
    user_id BLOB PRIMARY KEY NOT NULL,
    call_id BLOB NOT NULL REFERENCES calls (id) ON DELETE CASCADE
);
CREATE INDEX call_parties_call ON call_parties (call_id);
