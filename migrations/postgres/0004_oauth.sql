-- Sign in with Google and GitHub. An identity is one account at a provider (its stable subject,
-- not its email, which can change there) and the user it signs in as. A pending authorization is
-- one trip to a provider's consent page: its `state` (stored as a hash), the hash of the nonce
-- in the browser's cookie it is bound to, the PKCE verifier and where to go afterwards. Pending
-- authorizations are single-use (deleted when the callback presents them) and short-lived.
CREATE TABLE oauth_identities (
    provider      TEXT NOT NULL,
    subject       TEXT NOT NULL,
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX oauth_identities_user_id ON oauth_identities (user_id);

CREATE TABLE oauth_states (
    state_hash    BYTEA PRIMARY KEY,
    provider      TEXT NOT NULL,
    browser_hash  BYTEA NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to     TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX oauth_states_expires_at ON oauth_states (expires_at);
