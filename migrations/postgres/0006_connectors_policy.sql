-- Connectors and the policy engine: more transports (SSE, stdio), upstream credentials (env,
-- OAuth client credentials), limits, the tool catalog with risk and review state, risk rules.
ALTER TABLE connectors ADD COLUMN command TEXT;
ALTER TABLE connectors ADD COLUMN args TEXT NOT NULL DEFAULT '[]';
ALTER TABLE connectors ADD COLUMN env_names TEXT NOT NULL DEFAULT '[]';
ALTER TABLE connectors ADD COLUMN env_sealed TEXT;
ALTER TABLE connectors ADD COLUMN oauth TEXT;
ALTER TABLE connectors ADD COLUMN oauth_secret_sealed TEXT;
ALTER TABLE connectors ADD COLUMN timeout_ms BIGINT NOT NULL DEFAULT 30000;
ALTER TABLE connectors ADD COLUMN max_concurrency BIGINT NOT NULL DEFAULT 32;
ALTER TABLE connectors ADD COLUMN catalog_initialized BIGINT NOT NULL DEFAULT 0;

CREATE TABLE connector_tools (
    connector_id TEXT NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    input_schema TEXT NOT NULL,
    annotations TEXT NOT NULL,
    hash TEXT NOT NULL,
    approved_hash TEXT,
    status TEXT NOT NULL,
    risk TEXT NOT NULL,
    risk_reason TEXT NOT NULL,
    risk_overridden BIGINT NOT NULL DEFAULT 0,
    present BIGINT NOT NULL DEFAULT 1,
    first_seen BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (connector_id, name)
);

CREATE INDEX connector_tools_status ON connector_tools (status);

ALTER TABLE tool_policies ADD COLUMN allow_risk TEXT;
ALTER TABLE tool_policies ADD COLUMN block_risk TEXT;
ALTER TABLE tool_policies ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tool_policies ADD COLUMN prompts TEXT NOT NULL DEFAULT '[]';

-- Connectors created before the catalog existed keep serving: their first discovery is initial.
