DROP TRIGGER users_webhook_events ON users;
DROP TRIGGER contents_webhook_events ON contents;
DROP FUNCTION record_webhook_event();
DROP FUNCTION api_timestamp(TIMESTAMPTZ);
DROP TABLE webhook_deliveries;
DROP TABLE webhook_events;
DROP TABLE webhooks;
