DROP TABLE login_failures;
DROP TABLE audit_events;
DROP TABLE password_resets;
DROP TABLE api_tokens;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
