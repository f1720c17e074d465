-- Whether Redis may hold a value some write could not delete: a write whose
-- delete failed or timed out raises `dirty_epoch`; a flush records the epoch
-- it covered in `flushed_epoch`. An instance trusts Redis again only once
-- no mark is pending, so one that starts later, told of no failure, still
-- flushes first.
CREATE TABLE cache_redis_marks (
    only_row      BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    dirty_epoch   BIGINT NOT NULL DEFAULT 0,
    flushed_epoch BIGINT NOT NULL DEFAULT 0
);
INSERT INTO cache_redis_marks DEFAULT VALUES;
