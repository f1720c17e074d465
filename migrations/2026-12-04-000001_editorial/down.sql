DROP TRIGGER contents_fill_defaults ON contents;
DROP FUNCTION contents_fill_defaults();
DROP TABLE content_revisions;
DROP TABLE content_slugs;
DROP INDEX contents_published_created_idx;
DROP INDEX contents_published_updated_idx;
DROP INDEX contents_tags_idx;
DROP INDEX contents_scheduled_idx;
ALTER TABLE contents
    DROP CONSTRAINT contents_scheduled_has_time,
    DROP COLUMN status,
    DROP COLUMN publish_at,
    DROP COLUMN published_at,
    DROP COLUMN slug,
    DROP COLUMN tags,
    DROP COLUMN version,
    DROP COLUMN updated_by;
