CREATE TABLE slug_counters (
    base TEXT COLLATE "C" PRIMARY KEY,
    last BIGINT NOT NULL
);
DROP SCHEMA slug_numbers CASCADE;
CREATE OR REPLACE FUNCTION next_slug_number(base TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    given BIGINT;
    prefix TEXT COLLATE "C" := next_slug_number.base || '-';
BEGIN
    UPDATE slug_counters SET last = last + 1 WHERE base = next_slug_number.base
        RETURNING last INTO given;
    IF FOUND THEN
        RETURN given;
    END IF;
    SELECT n INTO given
        FROM generate_series(2, 2 + (SELECT count(*) FROM content_slugs
                                     WHERE slug > prefix AND slug < next_slug_number.base || '.')) AS n
        WHERE NOT EXISTS (SELECT 1 FROM content_slugs WHERE slug = prefix || n)
        ORDER BY n LIMIT 1;
    INSERT INTO slug_counters (base, last) VALUES (next_slug_number.base, given)
        ON CONFLICT (base) DO UPDATE SET last = slug_counters.last + 1
        RETURNING last INTO given;
    RETURN given;
END;
$$;
