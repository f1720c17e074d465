CREATE TABLE webhook_events (
    id          TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    data        JSON NOT NULL
);
INSERT INTO webhook_events (id, event, occurred_at, data)
    SELECT DISTINCT ON (event_id) event_id, event, occurred_at, data FROM webhook_deliveries
    ORDER BY event_id, id;
ALTER TABLE webhook_deliveries DROP COLUMN event, DROP COLUMN occurred_at, DROP COLUMN data;
DROP INDEX webhook_deliveries_due_idx;
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';

CREATE OR REPLACE FUNCTION record_webhook_event() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    kind TEXT;
    subject TEXT;
    payload JSON;
    event_id TEXT;
BEGIN
    IF TG_TABLE_NAME = 'contents' THEN
        kind := CASE
            WHEN TG_OP = 'INSERT' THEN 'content.created'
            WHEN TG_OP = 'DELETE' THEN 'content.deleted'
            WHEN OLD.status <> 'published' AND NEW.status = 'published' THEN 'content.published'
            WHEN OLD.status = 'published' AND NEW.status <> 'published' THEN 'content.unpublished'
            ELSE 'content.updated'
        END;
    ELSE
        kind := CASE WHEN TG_OP = 'INSERT' THEN 'user.created' ELSE 'user.deleted' END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM webhooks WHERE active AND kind = ANY (events)) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        subject := split_part(kind, '.', 1) || ':' || OLD.id;
        payload := json_build_object('id', OLD.id);
    ELSIF TG_TABLE_NAME = 'contents' THEN
        subject := 'content:' || NEW.id;
        SELECT json_build_object(
                   'id', NEW.id, 'title', NEW.title, 'image', NEW.image,
                   'content', NEW.content, 'user_id', NEW.user_id,
                   'created_at', api_timestamp(NEW.created_at),
                   'updated_at', api_timestamp(NEW.updated_at), 'status', NEW.status,
                   'publish_at', api_timestamp(NEW.publish_at),
                   'published_at', api_timestamp(NEW.published_at), 'slug', NEW.slug,
                   'tags', NEW.tags, 'version', NEW.version,
                   'user', json_build_object('id', u.id, 'name', u.name, 'country', u.country,
                                             'state', u.state,
                                             'created_at', api_timestamp(u.created_at)))
            INTO payload
            FROM users u WHERE u.id = NEW.user_id;
    ELSE
        subject := 'user:' || NEW.id;
        payload := json_build_object('id', NEW.id, 'name', NEW.name, 'country', NEW.country,
                                     'state', NEW.state,
                                     'created_at', api_timestamp(NEW.created_at));
    END IF;
    event_id := 'evt_' || replace(gen_random_uuid()::TEXT, '-', '');
    INSERT INTO webhook_events (id, event, occurred_at, data)
        VALUES (event_id, kind, now(), payload);
    INSERT INTO webhook_deliveries (webhook_id, event_id, subject, next_attempt_at)
        SELECT id, event_id, subject, now() FROM webhooks WHERE active AND kind = ANY (events);
    RETURN NULL;
END;
$$;
