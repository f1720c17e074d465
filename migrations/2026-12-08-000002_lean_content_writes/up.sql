-- What a write costs PostgreSQL beyond its rows (measured on creates:
-- together 12 % of the CPU a create costs, the service's and PostgreSQL's):

-- 1. A table's CHECK constraints are read back from their stored text and
-- planned again by every statement that writes a row (6 % of PostgreSQL's
-- time under creates went to parsing them); a domain's are parsed once per
-- session. The content rules move from the table onto domains, with the
-- same expressions (the service checks them all before it writes; these
-- stop a row that got past it). The cross-column rule stays on the table.
ALTER TABLE contents
    DROP CONSTRAINT contents_title_length,
    DROP CONSTRAINT contents_content_length,
    DROP CONSTRAINT contents_image_url,
    DROP CONSTRAINT contents_slug_shape,
    DROP CONSTRAINT contents_status_known,
    DROP CONSTRAINT contents_tags_count;
CREATE DOMAIN content_title AS TEXT
    CONSTRAINT content_title_length CHECK (char_length(VALUE) BETWEEN 3 AND 200 AND VALUE = btrim(VALUE));
CREATE DOMAIN content_body AS TEXT
    CONSTRAINT content_body_length
    CHECK (char_length(VALUE) BETWEEN 10 AND 100000 AND btrim(VALUE) <> '');
CREATE DOMAIN content_image AS TEXT
    CONSTRAINT content_image_url CHECK (char_length(VALUE) <= 2048 AND VALUE ~* '^https?://');
CREATE DOMAIN content_slug AS TEXT COLLATE "C"
    CONSTRAINT content_slug_shape
    CHECK (char_length(VALUE) BETWEEN 1 AND 200 AND VALUE ~ '^[a-z0-9]+(-[a-z0-9]+)*$');
CREATE DOMAIN content_status AS TEXT
    CONSTRAINT content_status_known CHECK (VALUE IN ('draft', 'published', 'scheduled'));
CREATE DOMAIN content_tags AS TEXT[] COLLATE "C"
    CONSTRAINT content_tags_count CHECK (cardinality(VALUE) <= 10);
ALTER TABLE contents
    ALTER COLUMN title TYPE content_title,
    ALTER COLUMN content TYPE content_body,
    ALTER COLUMN image TYPE content_image,
    ALTER COLUMN slug TYPE content_slug COLLATE "C",
    ALTER COLUMN status TYPE content_status,
    ALTER COLUMN tags TYPE content_tags COLLATE "C";

-- 2. The defaults trigger runs only for a row that needs it (an insert
-- that is not the service's: a create now sets `published_at` itself).
DROP TRIGGER contents_fill_defaults ON contents;
CREATE TRIGGER contents_fill_defaults BEFORE INSERT ON contents
    FOR EACH ROW
    WHEN (NEW.slug IS NULL OR (NEW.status = 'published' AND NEW.published_at IS NULL))
    EXECUTE FUNCTION contents_fill_defaults();

-- Returned columns are cast back to the declared TEXT types (RETURN QUERY
-- wants the exact types).
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
    INSERT INTO contents (id, title, content, image, user_id, status, publish_at,
                          published_at, slug, tags, updated_by)
        VALUES (new_id, new_title, new_content, new_image,
                owner, new_status, new_publish_at,
                CASE WHEN new_status = 'published' THEN now() END,
                claimed, new_tags, editor);
    IF invalidates THEN
        INSERT INTO cache_outbox (items) VALUES ('{}') RETURNING id INTO recorded;
    END IF;
    RETURN QUERY
        SELECT c.id, c.title::TEXT, c.content::TEXT, c.image::TEXT, c.user_id, c.created_at,
               c.updated_at, c.status::TEXT, c.publish_at, c.published_at, c.slug::TEXT,
               c.tags::TEXT[], c.version,
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
        SELECT c.id, c.title::TEXT, c.content::TEXT, c.image::TEXT, c.user_id, c.created_at,
               c.updated_at, c.status::TEXT, c.publish_at, c.published_at, c.slug::TEXT,
               c.tags::TEXT[], c.version,
               c.updated_by, u.name, u.country, u.state, u.created_at, recorded
        FROM contents c JOIN users u ON u.id = c.user_id
        WHERE c.id = item;
END;
$$;

-- 3. The webhook event triggers are enabled only while an active webhook
-- exists: with none, a change runs no trigger at all. A trigger on
-- `webhooks` syncs them in the transaction of every change that can alter
-- the answer (a webhook created or deleted, `active` changed), whether the
-- service or plain SQL made it. The lock orders concurrent changes (each
-- sees what the one before committed) and waits for writes in flight; a
-- trigger that is enabled already is left as it is (an ALTER makes every
-- session plan its statements on the table again). It runs as the tables'
-- owner (the role that applied the migrations), so a service connecting as
-- a role without ALTER rights on them can still change webhooks.
CREATE FUNCTION sync_webhook_event_triggers() RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    wanted "char";
BEGIN
    LOCK TABLE contents, users IN SHARE ROW EXCLUSIVE MODE;
    wanted := CASE WHEN EXISTS (SELECT 1 FROM webhooks WHERE active) THEN 'O' ELSE 'D' END;
    IF (SELECT tgenabled FROM pg_trigger
        WHERE tgrelid = 'contents'::regclass AND tgname = 'contents_webhook_events') <> wanted THEN
        IF wanted = 'O' THEN
            ALTER TABLE contents ENABLE TRIGGER contents_webhook_events;
            ALTER TABLE users ENABLE TRIGGER users_webhook_events;
        ELSE
            ALTER TABLE contents DISABLE TRIGGER contents_webhook_events;
            ALTER TABLE users DISABLE TRIGGER users_webhook_events;
        END IF;
    END IF;
END;
$$;

CREATE FUNCTION webhooks_changed() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sync_webhook_event_triggers();
    RETURN NULL;
END;
$$;
CREATE TRIGGER webhooks_sync_event_triggers AFTER INSERT OR DELETE ON webhooks
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks_changed();
CREATE TRIGGER webhooks_sync_event_triggers_on_switch AFTER UPDATE OF active ON webhooks
    FOR EACH ROW WHEN (OLD.active IS DISTINCT FROM NEW.active)
    EXECUTE FUNCTION webhooks_changed();
SELECT sync_webhook_event_triggers();
