-- A change that webhooks subscribe to writes one row per webhook and no
-- other: the event (its id, name, time and data) is kept on each of its
-- deliveries. A separate event row and its key cost every change about as
-- much as the delivery itself; with the few webhooks a site has, the copy of
-- the data per webhook costs less.
ALTER TABLE webhook_deliveries
    ADD COLUMN event       TEXT,
    ADD COLUMN occurred_at TIMESTAMPTZ,
    ADD COLUMN data        JSON;
UPDATE webhook_deliveries d SET event = e.event, occurred_at = e.occurred_at, data = e.data
    FROM webhook_events e WHERE e.id = d.event_id;
-- A delivery whose event was pruned (only a settled one can be) keeps no data.
DELETE FROM webhook_deliveries WHERE event IS NULL;
ALTER TABLE webhook_deliveries
    ALTER COLUMN event SET NOT NULL,
    ALTER COLUMN occurred_at SET NOT NULL,
    ALTER COLUMN data SET NOT NULL;
DROP TABLE webhook_events;

-- A claim walks each active webhook's due deliveries in due order and
-- stops at the webhook's free slots: one index range per webhook, however
-- many deliveries wait (with one index on the due time alone, a claim read
-- and sorted every due delivery of every webhook, and a webhook with a
-- backlog crowded the others out of the claim).
DROP INDEX webhook_deliveries_due_idx;
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (webhook_id, next_attempt_at, id)
    WHERE status = 'pending';

-- One statement: the event on a delivery row for each subscribed webhook.
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
