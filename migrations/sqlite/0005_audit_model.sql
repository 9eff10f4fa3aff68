-- One event model for every audit event (who, from where, with which client, what was sent and
-- returned, DLP findings), periodic signed checkpoints of the hash chain, full-text search, and
-- SIEM sinks that deliver from the audit log itself (each sink keeps a cursor: the log is the
-- durable outbox).
ALTER TABLE audit_events ADD COLUMN chain_v BIGINT;
ALTER TABLE audit_events ADD COLUMN subject_kind TEXT;
ALTER TABLE audit_events ADD COLUMN client_name TEXT;
ALTER TABLE audit_events ADD COLUMN client_id TEXT;
ALTER TABLE audit_events ADD COLUMN session_id TEXT;
ALTER TABLE audit_events ADD COLUMN ip TEXT;
ALTER TABLE audit_events ADD COLUMN user_agent TEXT;
ALTER TABLE audit_events ADD COLUMN call_id TEXT;
ALTER TABLE audit_events ADD COLUMN args_redacted TEXT;
ALTER TABLE audit_events ADD COLUMN args_hash TEXT;
ALTER TABLE audit_events ADD COLUMN elevation_id TEXT;
ALTER TABLE audit_events ADD COLUMN approval_id TEXT;
ALTER TABLE audit_events ADD COLUMN bytes_in BIGINT;
ALTER TABLE audit_events ADD COLUMN bytes_out BIGINT;
ALTER TABLE audit_events ADD COLUMN dlp_findings TEXT;

CREATE INDEX audit_events_principal_at ON audit_events (principal, at);
CREATE INDEX audit_events_connector_at ON audit_events (connector, tool, at);
CREATE INDEX audit_events_kind_at ON audit_events (kind, at);
CREATE INDEX audit_events_call ON audit_events (call_id);

-- Full text over what a person would search for: arguments, errors, details, names. Filled off
-- the append path, in bulk, by `Store::index_audit_text` (in the background and before every
-- text search), so appending an event does not pay for tokenising it.
CREATE VIRTUAL TABLE audit_search USING fts5(body, content='', contentless_delete=1);
CREATE TRIGGER audit_events_search_purge AFTER DELETE ON audit_events BEGIN
    DELETE FROM audit_search WHERE rowid = old.id;
END;

-- Every so often the chain's head is recorded with a MAC under the master key: an attacker who
-- can write the database but not read the key cannot rewrite history past a checkpoint, and
-- retention can purge old events while the rest stays verifiable from the retained checkpoint.
CREATE TABLE audit_checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    event_id BIGINT NOT NULL,
    hash TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE INDEX audit_checkpoints_event ON audit_checkpoints (event_id);

CREATE TABLE siem_sinks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    secret TEXT,
    enabled BIGINT NOT NULL DEFAULT 1,
    cursor BIGINT NOT NULL DEFAULT 0,
    delivered BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    last_attempt_at BIGINT,
    last_success_at BIGINT,
    lease_owner TEXT,
    lease_until BIGINT,
    created_at BIGINT NOT NULL
);
