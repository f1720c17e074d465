DROP TRIGGER webhooks_sync_event_triggers ON webhooks;
DROP TRIGGER webhooks_sync_event_triggers_on_switch ON webhooks;
DROP FUNCTION webhooks_changed();
DROP FUNCTION sync_webhook_event_triggers();
ALTER TABLE contents ENABLE TRIGGER contents_webhook_events;
ALTER TABLE users ENABLE TRIGGER users_webhook_events;

CREATE OR REPLACE FUNCTION create_content(
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

CREATE OR REPLACE FUNCTION write_content_version(
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

DROP TRIGGER contents_fill_defaults ON contents;
CREATE TRIGGER contents_fill_defaults BEFORE INSERT ON contents
    FOR EACH ROW EXECUTE FUNCTION contents_fill_defaults();

ALTER TABLE contents
    ALTER COLUMN title TYPE TEXT,
    ALTER COLUMN content TYPE TEXT,
    ALTER COLUMN image TYPE TEXT,
    ALTER COLUMN slug TYPE TEXT COLLATE "C",
    ALTER COLUMN status TYPE TEXT,
    ALTER COLUMN tags TYPE TEXT[] COLLATE "C";
DROP DOMAIN content_title, content_body, content_image, content_slug, content_status, content_tags;
ALTER TABLE contents
    ADD CONSTRAINT contents_title_length
        CHECK (char_length(title) BETWEEN 3 AND 200 AND title = btrim(title)),
    ADD CONSTRAINT contents_content_length
        CHECK (char_length(content) BETWEEN 10 AND 100000 AND btrim(content) <> ''),
    ADD CONSTRAINT contents_image_url
        CHECK (image IS NULL OR (char_length(image) <= 2048 AND image ~* '^https?://')),
    ADD CONSTRAINT contents_slug_shape
        CHECK (char_length(slug) BETWEEN 1 AND 200 AND slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    ADD CONSTRAINT contents_status_known CHECK (status IN ('draft', 'published', 'scheduled')),
    ADD CONSTRAINT contents_tags_count CHECK (cardinality(tags) <= 10);
