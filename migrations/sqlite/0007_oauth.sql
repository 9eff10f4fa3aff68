-- Toolgate as the MCP OAuth authorization server, and service principals.
-- Personal access tokens gain an expiry and scopes (NULL scopes: every scope, as before).
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN scopes TEXT;

-- OAuth clients: pre-registered (dashboard/API), CIMD (id = the metadata document URL, row kept
-- from the last successful fetch) and DCR (RFC 7591). Confidential clients keep an argon2id hash.
CREATE TABLE oauth_clients (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    secret_hash TEXT,
    auth_method TEXT NOT NULL,
    client_uri TEXT,
    logo_uri TEXT,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    disabled_at BIGINT,
    last_used_at BIGINT,
    fetched_at BIGINT
);

-- A person's consent to one client (scopes space-separated); revoking deletes it.
CREATE TABLE oauth_consents (
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- One authorization (a refresh-token family): access tokens name it, revoking it ends them all.
CREATE TABLE oauth_grants (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scopes TEXT NOT NULL,
    resource TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT,
    revoked_reason TEXT
);
CREATE INDEX oauth_grants_user ON oauth_grants (user_id);
CREATE INDEX oauth_grants_client ON oauth_grants (client_id);

-- Authorization codes (SHA-256 of the code), single use; grant_id is set when exchanged.
CREATE TABLE oauth_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    resource TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    grant_id TEXT
);

-- Refresh tokens (SHA-256), rotated on use; a used one presented again revokes its grant.
CREATE TABLE oauth_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX oauth_refresh_tokens_grant ON oauth_refresh_tokens (grant_id);

-- Service principals: unattended agents with groups of their own.
CREATE TABLE service_principals (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    owner TEXT NOT NULL,
    entra_app_id TEXT,
    expires_at BIGINT,
    disabled_at BIGINT,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    last_used_at BIGINT
);
CREATE UNIQUE INDEX service_principals_name_ci ON service_principals (lower(name));
CREATE UNIQUE INDEX service_principals_entra_app ON service_principals (entra_app_id);

-- Client secrets of service principals (argon2id); several live at once during a rotation.
CREATE TABLE sp_secrets (
    id TEXT PRIMARY KEY,
    sp_id TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX sp_secrets_sp ON sp_secrets (sp_id);

CREATE TABLE sp_groups (
    sp_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    PRIMARY KEY (sp_id, group_id)
);
CREATE INDEX sp_groups_group ON sp_groups (group_id);
