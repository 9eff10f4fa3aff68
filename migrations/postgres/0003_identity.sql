-- Sign-in with an OpenID Provider: settings (JSON per key; secrets sealed), the stable subject a
-- person signs in as, and which user a dashboard session belongs to (so offboarding can end it).
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
ALTER TABLE users ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX users_oidc_subject ON users (oidc_subject);
ALTER TABLE dashboard_sessions ADD COLUMN user_id TEXT;
CREATE INDEX dashboard_sessions_user ON dashboard_sessions (user_id);
