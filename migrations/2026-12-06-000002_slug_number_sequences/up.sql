-- Generated slug numbers come from one sequence per base instead of a
-- counter row: a counter row stays locked until its creator commits (WAL
-- flush included), so creates of one title ran one at a time; `nextval`
-- locks nothing. Numbers may have gaps (a rolled-back create), as before.
-- The sequence is made the first time a base is taken, starting at the
-- first unused number; its name is the base's MD5 (bases are up to 200
-- characters, names 63).

CREATE SCHEMA slug_numbers;

DO $$
DECLARE
    counter RECORD;
BEGIN
    FOR counter IN SELECT base, last FROM slug_counters LOOP
        EXECUTE format('CREATE SEQUENCE slug_numbers.%I START %s', md5(counter.base), counter.last + 1);
    END LOOP;
END $$;

DROP TABLE slug_counters;

CREATE OR REPLACE FUNCTION next_slug_number(base TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    numbers TEXT := format('slug_numbers.%I', md5(next_slug_number.base));
    prefix TEXT COLLATE "C" := next_slug_number.base || '-';
    first BIGINT;
BEGIN
    LOOP
        IF to_regclass(numbers) IS NOT NULL THEN
            RETURN nextval(numbers);
        END IF;
        -- The slug column is in the "C" collation: this range is exactly
        -- the slugs starting with `base-` ('.' follows '-' in ASCII).
        SELECT n INTO first
            FROM generate_series(2, 2 + (SELECT count(*) FROM content_slugs
                                         WHERE slug > prefix AND slug < next_slug_number.base || '.')) AS n
            WHERE NOT EXISTS (SELECT 1 FROM content_slugs WHERE slug = prefix || n)
            ORDER BY n LIMIT 1;
        BEGIN
            EXECUTE format('CREATE SEQUENCE %s START %s', numbers, first);
            RETURN nextval(numbers);
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
            -- Another creator made it meanwhile (and has committed): use it.
        END;
    END LOOP;
END;
$$;
