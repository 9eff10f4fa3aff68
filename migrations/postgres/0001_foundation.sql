-- Foundation schema: people, groups, connectors, policies, tokens, dashboard accounts and sessions, audit.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    external_id TEXT,
    active BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_user_name_ci ON users (lower(user_name));

CREATE TABLE access_groups (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    external_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX access_groups_display_name_ci ON access_groups (lower(display_name));

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES access_groups (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE connectors (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    transport TEXT NOT NULL,
    url TEXT NOT NULL,
    header_names TEXT NOT NULL,
    headers_sealed TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE tool_policies (
    group_id TEXT NOT NULL REFERENCES access_groups (id) ON DELETE CASCADE,
    connector_id TEXT NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
    allow_patterns TEXT NOT NULL,
    block_patterns TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, connector_id)
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE admin_accounts (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX admin_accounts_username_ci ON admin_accounts (lower(username));

CREATE TABLE dashboard_sessions (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);

CREATE TABLE audit_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    principal TEXT NOT NULL,
    principal_id TEXT,
    connector TEXT,
    tool TEXT,
    decision TEXT NOT NULL,
    rule TEXT,
    outcome TEXT NOT NULL,
    latency_us BIGINT NOT NULL,
    error TEXT,
    request_id TEXT
);
CREATE INDEX audit_events_at ON audit_events (at);
