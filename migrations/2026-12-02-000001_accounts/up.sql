-- Accounts: sessions with rotating refresh tokens, machine tokens, password
-- resets, the audit log and per-email login throttling. Secrets are stored
-- only as SHA-256 hashes (each is 256 random bits: a slow hash adds nothing).

CREATE TABLE sessions (
    id           BIGSERIAL PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- When its newest refresh token expires; an ended session is deleted.
    expires_at   TIMESTAMPTZ NOT NULL,
    user_agent   TEXT CONSTRAINT sessions_user_agent_length CHECK (char_length(user_agent) <= 512),
    ip           TEXT CONSTRAINT sessions_ip_length CHECK (char_length(ip) <= 64)
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Every refresh token a session was given: the current one (used_at NULL)
-- and the used ones, kept so that presenting one again is recognised.
CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY CONSTRAINT refresh_tokens_hash_length CHECK (octet_length(token_hash) = 32),
    session_id BIGINT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL
        CONSTRAINT api_tokens_name_length CHECK (char_length(name) BETWEEN 1 AND 100 AND name = btrim(name)),
    scopes       TEXT[] NOT NULL
        CONSTRAINT api_tokens_scopes_known CHECK (scopes <@ ARRAY['content:read', 'content:write']::TEXT[]),
    token_hash   BYTEA NOT NULL CONSTRAINT api_tokens_hash_length CHECK (octet_length(token_hash) = 32),
    expires_at   TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);

CREATE TABLE password_resets (
    token_hash BYTEA PRIMARY KEY CONSTRAINT password_resets_hash_length CHECK (octet_length(token_hash) = 32),
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX password_resets_user_id_idx ON password_resets (user_id);

-- Outlives the users it names (no foreign keys): a deletion stays audited.
CREATE TABLE audit_events (
    id             BIGSERIAL PRIMARY KEY,
    at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    action         TEXT NOT NULL CONSTRAINT audit_events_action_known CHECK (action IN (
        'login.succeeded', 'login.failed', 'logout', 'session.revoked', 'session.reuse_detected',
        'password.changed', 'password.reset', 'role.changed', 'user.deleted',
        'token.created', 'token.revoked')),
    actor_user_id  BIGINT,
    target_user_id BIGINT,
    ip             TEXT,
    request_id     TEXT
);

-- Failed logins per email (as a SHA-256 of the normalised address, so a
-- mistyped address is not kept in the clear), read over the last 15 minutes.
CREATE TABLE login_failures (
    email_hash BYTEA NOT NULL,
    at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_email_hash_at_idx ON login_failures (email_hash, at);
-- Expired failures of every address are pruned on each new failure.
CREATE INDEX login_failures_at_idx ON login_failures (at);
