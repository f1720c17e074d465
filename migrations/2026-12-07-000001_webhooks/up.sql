-- Webhooks (contract §15). An event is recorded by a trigger on the row it
-- is about, so it is in the transaction of its change on every path that
-- writes one (a create, a change, the scheduler, a delete, an account's
-- removal): never lost, never recorded for a change rolled back. Each
-- webhook subscribed at that moment gets a delivery row; every instance
-- sends due deliveries, claimed with `FOR UPDATE SKIP LOCKED`.

CREATE TABLE webhooks (
    id         BIGSERIAL PRIMARY KEY,
    url        TEXT NOT NULL,
    events     TEXT[] NOT NULL,
    -- `whsec_` + base64 of the signing key.
    secret     TEXT NOT NULL,
    active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE webhook_events (
    -- `evt_` + 32 hex digits: the `Webhook-Id` of every attempt.
    id          TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    data        JSON NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    -- No foreign keys: their checks (a share lock on the webhook's row by
    -- every concurrent change) cost every recorded change. A webhook's
    -- deliveries are deleted with it; events go when no delivery needs them.
    webhook_id       BIGINT NOT NULL,
    event_id         TEXT NOT NULL,
    -- What the event is about (`content:7`, `user:3`): one subject's
    -- deliveries to one webhook go out in id order, which is commit order
    -- (the trigger runs after the row is written, under its lock).
    subject          TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error       TEXT,
    -- Pending: when it may be sent.
    next_attempt_at  TIMESTAMPTZ,
    -- A claim's lease: a sender that dies mid-attempt leaves the delivery to
    -- any instance once it ends. Not indexed, so that a claim is a HOT
    -- update (no index entry written; room for it kept by the fillfactor).
    leased_until     TIMESTAMPTZ,
    delivered_at     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
) WITH (fillfactor = 70);

CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_order_idx ON webhook_deliveries (webhook_id, subject, id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, id);

-- The API's timestamp format: RFC 3339, UTC, six fractional digits. STABLE
-- like `to_char`, so that it is inlined: a function declared more constant
-- than its body is run as a call, parsed again every time.
CREATE FUNCTION api_timestamp(at TIMESTAMPTZ) RETURNS TEXT
LANGUAGE sql STABLE AS $$
    SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- Records the event of a row change for every active webhook subscribed
-- to it; nothing (one lookup) when there is none.
CREATE FUNCTION record_webhook_event() RETURNS TRIGGER
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

CREATE TRIGGER contents_webhook_events AFTER INSERT OR UPDATE OR DELETE ON contents
    FOR EACH ROW EXECUTE FUNCTION record_webhook_event();
CREATE TRIGGER users_webhook_events AFTER INSERT OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION record_webhook_event();
