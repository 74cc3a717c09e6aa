-- Web Push (SPEC §13). A subscription is one browser's push endpoint, bound to the session that
-- made it: the endpoint is stored once (subscribing it again, from any session, moves it), and
-- ending the session deletes it.
CREATE TABLE push_subscriptions (
    id         UUID PRIMARY KEY,
    session_id UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id    UUID NOT NULL,
    endpoint   TEXT NOT NULL UNIQUE,
    p256dh     TEXT NOT NULL,
    auth       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);
CREATE INDEX push_subscriptions_session ON push_subscriptions (session_id);

-- Pushes decided and not yet sent: one row per (event, subscription), so each is sent at most
-- once. A sender claims a row until `claimed_until`; a row whose claim ran out (its node died)
-- is claimed again. `due_at` is the next attempt.
CREATE TABLE push_outbox (
    id              UUID PRIMARY KEY,
    subscription_id UUID NOT NULL REFERENCES push_subscriptions (id) ON DELETE CASCADE,
    event_id        UUID NOT NULL,
    payload         TEXT NOT NULL,
    topic           TEXT,
    urgency         TEXT NOT NULL,
    ttl_secs        BIGINT NOT NULL,
    due_at          BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claimed_until   BIGINT,
    UNIQUE (event_id, subscription_id)
);
CREATE INDEX push_outbox_due ON push_outbox (due_at);
CREATE INDEX push_outbox_subscription ON push_outbox (subscription_id);

-- What the server keeps for itself, shared by every node: the VAPID key pair, and how far the
-- push decision has read the messages.
CREATE TABLE server_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
