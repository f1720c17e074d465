-- Cache coherence over PostgreSQL: the instances serving an in-process
-- cache (L1) with their leases, and the invalidations each write records
-- in its own transaction (an outbox), completed after the commit.

-- Members come and go with their listening sessions: nothing here needs to
-- survive a crash (after one every session is gone and every L1 rejoins),
-- so the table writes no WAL.
CREATE UNLOGGED TABLE cache_members (
    instance     TEXT PRIMARY KEY,
    -- The listening session: terminated when the member is revoked.
    backend_pid  INTEGER NOT NULL,
    -- PostgreSQL's clock; the member stops serving earlier, on its own.
    lease_until  TIMESTAMPTZ NOT NULL,
    -- Removed by a writer it did not acknowledge: it may serve until
    -- lease_until, renews nothing, and must join again.
    revoked      BOOLEAN NOT NULL DEFAULT false
);

-- One row per write: what it invalidates (`items` NULL = everything).
-- Deleted once every member acknowledged it; any instance completes a row
-- older than a second (its writer died or lost its connections).
CREATE TABLE cache_outbox (
    id            BIGSERIAL PRIMARY KEY,
    items         BIGINT[],
    created_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    claimed_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
);
CREATE INDEX cache_outbox_created_idx ON cache_outbox (created_at);
