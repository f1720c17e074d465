-- Editorial workflow: status and scheduling, slugs with history, tags,
-- versions and revisions. Existing rows become published (at their
-- creation), get a slug from their title and version 1, without touching
-- their updated_at (their cached representations stay what they were
-- until their next write).

ALTER TABLE contents
    ADD COLUMN status       TEXT NOT NULL DEFAULT 'published'
        CONSTRAINT contents_status_known CHECK (status IN ('draft', 'published', 'scheduled')),
    ADD COLUMN publish_at   TIMESTAMPTZ,
    ADD COLUMN published_at TIMESTAMPTZ,
    ADD COLUMN slug         TEXT COLLATE "C"
        CONSTRAINT contents_slug_shape CHECK (char_length(slug) BETWEEN 1 AND 200 AND slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    ADD COLUMN tags         TEXT[] COLLATE "C" NOT NULL DEFAULT '{}'
        CONSTRAINT contents_tags_count CHECK (cardinality(tags) <= 10),
    ADD COLUMN version      BIGINT NOT NULL DEFAULT 1,
    -- Who made the current version (no foreign key: deleting an editor's
    -- account must not rewrite, and so silently change, other users' items).
    ADD COLUMN updated_by   BIGINT,
    ADD CONSTRAINT contents_scheduled_has_time CHECK (status <> 'scheduled' OR publish_at IS NOT NULL);

ALTER TABLE contents DISABLE TRIGGER contents_set_updated_at;

-- Slugs of existing rows: the title lower-cased, common Latin letters
-- transliterated, every other run of characters one '-'; then '-2', '-3', …
-- for repeats in id order (new items get theirs from the service's own
-- transliteration).
UPDATE contents SET published_at = created_at, updated_by = user_id,
    slug = coalesce(nullif(trim(BOTH '-' FROM left(trim(BOTH '-' FROM regexp_replace(
        replace(replace(replace(replace(translate(lower(title),
            'àáâãäåāăąçćĉċčďđðèéêëēĕėęěĝğġģĥħìíîïĩīĭįıĵķĺļľŀłñńņňǹòóôõöøōŏőọŕŗřśŝşšșṣţťŧțùúûüũūŭůűųŵýÿŷźżžẹ',
            'aaaaaaaaacccccdddeeeeeeeeegggghhiiiiiiiiijklllllnnnnnoooooooooorrrssssssttttuuuuuuuuuuwyyyzzze'),
            'ß', 'ss'), 'æ', 'ae'), 'œ', 'oe'), 'þ', 'th'),
        '[^a-z0-9]+', '-', 'g')), 190)), ''), 'content');

DO $$
DECLARE
    repeated RECORD;
    suffix BIGINT;
    candidate TEXT;
BEGIN
    FOR repeated IN
        SELECT id, slug FROM (
            SELECT id, slug, row_number() OVER (PARTITION BY slug ORDER BY id) AS nth FROM contents
        ) ranked WHERE nth > 1 ORDER BY id
    LOOP
        suffix := 2;
        LOOP
            candidate := repeated.slug || '-' || suffix;
            EXIT WHEN NOT EXISTS (SELECT 1 FROM contents WHERE slug = candidate);
            suffix := suffix + 1;
        END LOOP;
        UPDATE contents SET slug = candidate WHERE id = repeated.id;
    END LOOP;
END $$;

ALTER TABLE contents ENABLE TRIGGER contents_set_updated_at;

ALTER TABLE contents
    ALTER COLUMN slug SET NOT NULL,
    ADD CONSTRAINT contents_slug_key UNIQUE (slug);

-- Every slug an item ever had: the current one, and the old ones that
-- redirect to it. A slug stays here after its item is deleted, so it is
-- never given to another item.
CREATE TABLE content_slugs (
    slug       TEXT COLLATE "C" PRIMARY KEY,
    -- Deferred: a new item claims its slug before its row exists.
    content_id BIGINT REFERENCES contents (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX content_slugs_content_id_idx ON content_slugs (content_id);
INSERT INTO content_slugs (slug, content_id) SELECT slug, id FROM contents;

-- Rows inserted without a slug (manual SQL, older tools) get
-- `content-{id}`; a published row without published_at is published at its
-- creation (the service's own inserts rely on this too).
CREATE FUNCTION contents_fill_defaults() RETURNS trigger AS $$
DECLARE
    candidate TEXT := 'content-' || NEW.id;
    suffix INT := 1;
BEGIN
    IF NEW.slug IS NULL THEN
        LOOP
            INSERT INTO content_slugs (slug, content_id) VALUES (candidate, NEW.id)
                ON CONFLICT DO NOTHING;
            EXIT WHEN FOUND;
            suffix := suffix + 1;
            candidate := 'content-' || NEW.id || '-' || suffix;
        END LOOP;
        NEW.slug := candidate;
    END IF;
    IF NEW.status = 'published' AND NEW.published_at IS NULL THEN
        NEW.published_at := NEW.created_at;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER contents_fill_defaults BEFORE INSERT ON contents
    FOR EACH ROW EXECUTE FUNCTION contents_fill_defaults();

-- The states a change replaced: version N as it was, made by changed_by
-- at changed_at. The newest REVISIONS_KEPT per item are kept.
CREATE TABLE content_revisions (
    content_id BIGINT NOT NULL REFERENCES contents (id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    title      TEXT NOT NULL,
    content    TEXT NOT NULL,
    image      TEXT,
    status     TEXT NOT NULL,
    publish_at TIMESTAMPTZ,
    slug       TEXT COLLATE "C" NOT NULL,
    tags       TEXT[] COLLATE "C" NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,
    changed_by BIGINT,
    PRIMARY KEY (content_id, version)
);

-- Public listings, one index per order (`oldest` walks the first backwards).
CREATE INDEX contents_published_created_idx ON contents (created_at DESC, id DESC)
    WHERE status = 'published';
CREATE INDEX contents_published_updated_idx ON contents (updated_at DESC, id DESC)
    WHERE status = 'published';
-- ?tag= (items carrying all of them) and the tag counts.
CREATE INDEX contents_tags_idx ON contents USING GIN (tags) WHERE status = 'published';
-- The scheduler's next due items.
CREATE INDEX contents_scheduled_idx ON contents (publish_at) WHERE status = 'scheduled';
