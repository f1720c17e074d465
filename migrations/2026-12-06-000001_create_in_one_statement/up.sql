-- A create is one statement: the slug claim, the row, the outbox record and
-- the author for the answer, in one round trip (its own transaction).

-- A number for a generated `{base}-{n}` (n ≥ 2) that no other caller gets:
-- one more than the last one given, or, the first time for `base`, the
-- first unused one (read once per base). Its row lock lasts until the
-- caller's commit, so creators of one title queue here for that long: the
-- reason a create is one short statement.
CREATE FUNCTION next_slug_number(base TEXT) RETURNS BIGINT
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
    -- The slug column is in the "C" collation: this range is exactly the
    -- slugs starting with `base-` ('.' follows '-' in ASCII).
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

-- Claims `base` for item `id`, else `{base}-{n}` with the next number (a
-- number is taken only if a client chose that slug, or it was used before
-- the counter: then the next one). Returns the slug claimed.
CREATE FUNCTION claim_generated_slug(base TEXT, id BIGINT) RETURNS TEXT
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    candidate TEXT := claim_generated_slug.base;
BEGIN
    LOOP
        INSERT INTO content_slugs (slug, content_id) VALUES (candidate, claim_generated_slug.id)
            ON CONFLICT (slug) DO NOTHING;
        IF FOUND THEN
            RETURN candidate;
        END IF;
        candidate := claim_generated_slug.base || '-' || next_slug_number(claim_generated_slug.base);
    END LOOP;
END;
$$;

-- Creates an item: claims its slug (`new_slug` as given when `generated`
-- is false, else generated from it), inserts it, records the invalidation of
-- every listing when `invalidates`, and returns the row with its author
-- and the outbox record's id. No row: the slug given is taken.
CREATE FUNCTION create_content(
    new_title TEXT, new_content TEXT, new_image TEXT, owner BIGINT, new_status TEXT,
    new_publish_at TIMESTAMPTZ, new_slug TEXT, generated BOOLEAN, new_tags TEXT[],
    editor BIGINT, invalidates BOOLEAN
) RETURNS TABLE (
    id BIGINT, title TEXT, content TEXT, image TEXT, user_id BIGINT,
    created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, status TEXT,
    publish_at TIMESTAMPTZ, published_at TIMESTAMPTZ, slug TEXT, tags TEXT[],
    version BIGINT, updated_by BIGINT, author_name TEXT, author_country TEXT,
    author_state TEXT, author_created_at TIMESTAMPTZ, outbox_id BIGINT
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_id BIGINT := nextval('contents_id_seq');
    claimed TEXT := new_slug;
    recorded BIGINT;
BEGIN
    IF generated THEN
        claimed := claim_generated_slug(new_slug, new_id);
    ELSE
        INSERT INTO content_slugs (slug, content_id) VALUES (claimed, new_id)
            ON CONFLICT (slug) DO NOTHING;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;
    INSERT INTO contents (id, title, content, image, user_id, status, publish_at, slug, tags, updated_by)
        VALUES (new_id, new_title, new_content, new_image,
                owner, new_status, new_publish_at,
                claimed, new_tags, editor);
    IF invalidates THEN
        INSERT INTO cache_outbox (items) VALUES ('{}') RETURNING id INTO recorded;
    END IF;
    RETURN QUERY
        SELECT c.id, c.title, c.content, c.image, c.user_id, c.created_at, c.updated_at,
               c.status, c.publish_at, c.published_at, c.slug::TEXT, c.tags::TEXT[], c.version,
               c.updated_by, u.name, u.country, u.state, u.created_at, recorded
        FROM contents c JOIN users u ON u.id = c.user_id
        WHERE c.id = new_id;
END;
$$;
