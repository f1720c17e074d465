-- A content change is written in one statement (its own transaction), after
-- one read: the caller read the item at `expected` and built the next state
-- from it; this locks the row, and if it is still that version, claims a
-- new slug, keeps the replaced version as a revision (the newest `kept`),
-- writes the next version, records the outbox row when a public
-- representation changes (`invalidates`) and returns the row with its
-- author. Otherwise it raises, so nothing of it stays:
-- `serialization_failure` when the item changed or went since it was read
-- (the caller reads again), `unique_violation` on `contents_slug_key` when
-- the new slug is another item's.
CREATE FUNCTION write_content_version(
    item BIGINT, expected BIGINT, new_title TEXT, new_content TEXT, new_image TEXT,
    new_status TEXT, new_publish_at TIMESTAMPTZ, new_slug TEXT, new_tags TEXT[],
    editor BIGINT, kept BIGINT, invalidates BOOLEAN
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
    replaced contents%ROWTYPE;
    recorded BIGINT;
BEGIN
    SELECT * INTO replaced FROM contents WHERE contents.id = item FOR UPDATE;
    IF NOT FOUND OR replaced.version <> expected THEN
        RAISE serialization_failure USING MESSAGE = 'the item changed since it was read';
    END IF;
    IF new_slug <> replaced.slug THEN
        INSERT INTO content_slugs (slug, content_id) VALUES (new_slug, item)
            ON CONFLICT (slug) DO UPDATE SET content_id = EXCLUDED.content_id
            WHERE content_slugs.content_id = EXCLUDED.content_id;
        IF NOT FOUND THEN
            RAISE unique_violation USING CONSTRAINT = 'contents_slug_key',
                MESSAGE = 'the slug is another item''s';
        END IF;
    END IF;
    INSERT INTO content_revisions (content_id, version, title, content, image, status,
                                   publish_at, slug, tags, changed_at, changed_by)
        VALUES (replaced.id, replaced.version, replaced.title, replaced.content, replaced.image,
                replaced.status, replaced.publish_at, replaced.slug, replaced.tags,
                replaced.updated_at, replaced.updated_by);
    DELETE FROM content_revisions
        WHERE content_id = item AND content_revisions.version <= replaced.version - kept;
    UPDATE contents SET title = new_title, content = new_content, image = new_image,
            status = new_status, publish_at = new_publish_at, slug = new_slug, tags = new_tags,
            published_at = coalesce(contents.published_at,
                                    CASE WHEN new_status = 'published' THEN now() END),
            version = contents.version + 1, updated_by = editor
        WHERE contents.id = item;
    IF invalidates THEN
        INSERT INTO cache_outbox (items) VALUES (ARRAY[item]) RETURNING cache_outbox.id INTO recorded;
    END IF;
    RETURN QUERY
        SELECT c.id, c.title, c.content, c.image, c.user_id, c.created_at, c.updated_at,
               c.status, c.publish_at, c.published_at, c.slug::TEXT, c.tags::TEXT[], c.version,
               c.updated_by, u.name, u.country, u.state, u.created_at, recorded
        FROM contents c JOIN users u ON u.id = c.user_id
        WHERE c.id = item;
END;
$$;
