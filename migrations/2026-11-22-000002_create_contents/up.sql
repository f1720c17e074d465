CREATE TABLE contents (
    id         BIGSERIAL PRIMARY KEY,
    title      TEXT NOT NULL
        CONSTRAINT contents_title_length CHECK (char_length(title) BETWEEN 3 AND 200 AND title = btrim(title)),
    content    TEXT NOT NULL
        CONSTRAINT contents_content_length CHECK (char_length(content) BETWEEN 10 AND 100000 AND btrim(content) <> ''),
    image      TEXT
        CONSTRAINT contents_image_url CHECK (image IS NULL OR (char_length(image) <= 2048 AND image ~* '^https?://')),
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- GET /content: newest first, keyset on (created_at, id).
CREATE INDEX contents_created_at_id_idx ON contents (created_at DESC, id DESC);
-- GET /content?user_id= and the newest items embedded in each user.
CREATE INDEX contents_user_id_created_at_id_idx ON contents (user_id, created_at DESC, id DESC);
-- GET /content?q=: ranked full-text search; queries must use this exact expression.
CREATE INDEX contents_search_idx ON contents USING GIN (
    (setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', content), 'B'))
);

CREATE TRIGGER contents_set_updated_at BEFORE UPDATE ON contents
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
