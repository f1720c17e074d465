-- The trigger as `2026-12-09-000001_lean_webhook_event_trigger` left it.
CREATE FUNCTION api_timestamp(at TIMESTAMPTZ) RETURNS TEXT
LANGUAGE sql STABLE AS $$
    SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;
CREATE OR REPLACE FUNCTION record_webhook_event() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    kind TEXT;
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
    -- One event id for all the webhooks that take the event (a function in
    -- FROM runs once per statement).
    IF TG_OP = 'DELETE' THEN
        INSERT INTO webhook_deliveries
                (webhook_id, event_id, event, occurred_at, data, subject, next_attempt_at)
            SELECT w.id, 'evt_' || replace(e.id::TEXT, '-', ''), kind, now(),
                   json_build_object('id', OLD.id), split_part(kind, '.', 1) || ':' || OLD.id,
                   now()
            FROM gen_random_uuid() AS e (id), webhooks w
            WHERE w.active AND kind = ANY (w.events);
    ELSIF TG_TABLE_NAME = 'contents' THEN
        INSERT INTO webhook_deliveries
                (webhook_id, event_id, event, occurred_at, data, subject, next_attempt_at)
            SELECT w.id, 'evt_' || replace(e.id::TEXT, '-', ''), kind, now(),
                   json_build_object(
                       'id', NEW.id, 'title', NEW.title, 'image', NEW.image,
                       'content', NEW.content, 'user_id', NEW.user_id,
                       'created_at', api_timestamp(NEW.created_at),
                       'updated_at', api_timestamp(NEW.updated_at), 'status', NEW.status,
                       'publish_at', api_timestamp(NEW.publish_at),
                       'published_at', api_timestamp(NEW.published_at), 'slug', NEW.slug,
                       'tags', NEW.tags, 'version', NEW.version,
                       'user', (SELECT json_build_object('id', u.id, 'name', u.name,
                                                         'country', u.country, 'state', u.state,
                                                         'created_at', api_timestamp(u.created_at))
                                FROM users u WHERE u.id = NEW.user_id)),
                   'content:' || NEW.id, now()
            FROM gen_random_uuid() AS e (id), webhooks w
            WHERE w.active AND kind = ANY (w.events);
    ELSE
        INSERT INTO webhook_deliveries
                (webhook_id, event_id, event, occurred_at, data, subject, next_attempt_at)
            SELECT w.id, 'evt_' || replace(e.id::TEXT, '-', ''), kind, now(),
                   json_build_object('id', NEW.id, 'name', NEW.name, 'country', NEW.country,
                                     'state', NEW.state,
                                     'created_at', api_timestamp(NEW.created_at)),
                   'user:' || NEW.id, now()
            FROM gen_random_uuid() AS e (id), webhooks w
            WHERE w.active AND kind = ANY (w.events);
    END IF;
    RETURN NULL;
END;
$$;
