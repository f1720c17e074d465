ALTER TABLE webhook_deliveries ALTER COLUMN status TYPE TEXT;
DROP DOMAIN webhook_delivery_status;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_status_check
    CHECK (status IN ('pending', 'delivered', 'failed'));

CREATE OR REPLACE FUNCTION record_webhook_event() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    kind TEXT;
    subject TEXT;
    payload JSON;
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
        payload := json_build_object(
            'id', NEW.id, 'title', NEW.title, 'image', NEW.image,
            'content', NEW.content, 'user_id', NEW.user_id,
            'created_at', api_timestamp(NEW.created_at),
            'updated_at', api_timestamp(NEW.updated_at), 'status', NEW.status,
            'publish_at', api_timestamp(NEW.publish_at),
            'published_at', api_timestamp(NEW.published_at), 'slug', NEW.slug,
            'tags', NEW.tags, 'version', NEW.version,
            'user', (SELECT json_build_object('id', u.id, 'name', u.name, 'country', u.country,
                                              'state', u.state,
                                              'created_at', api_timestamp(u.created_at))
                     FROM users u WHERE u.id = NEW.user_id));
    ELSE
        subject := 'user:' || NEW.id;
        payload := json_build_object('id', NEW.id, 'name', NEW.name, 'country', NEW.country,
                                     'state', NEW.state,
                                     'created_at', api_timestamp(NEW.created_at));
    END IF;
    INSERT INTO webhook_deliveries
            (webhook_id, event_id, event, occurred_at, data, subject, next_attempt_at)
        SELECT w.id, 'evt_' || replace(event_id::TEXT, '-', ''), kind, now(), payload, subject,
               now()
        FROM webhooks w, gen_random_uuid() AS event_id
        WHERE w.active AND kind = ANY (w.events);
    RETURN NULL;
END;
$$;
