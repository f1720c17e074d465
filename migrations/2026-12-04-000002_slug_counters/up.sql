-- The last number given to a generated slug `{base}-{n}`, per base. Taken
-- in a statement of its own before the creating transaction, so items
-- created at once with one title get different numbers at once instead of
-- queueing behind each other's claim of the same candidate, and the next
-- number costs one row, not a read of every `{base}-{n}` ever used.
CREATE TABLE slug_counters (
    base TEXT COLLATE "C" PRIMARY KEY,
    last BIGINT NOT NULL
);
