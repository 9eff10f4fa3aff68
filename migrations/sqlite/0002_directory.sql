-- SCIM provisioning: the full SCIM document beside the indexed columns, a version for ETags, where
-- an identity came from, a log of SCIM requests, and a detail column for non-tool audit events.
ALTER TABLE users ADD COLUMN scim_json TEXT;
ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'api';
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
CREATE INDEX users_external_id ON users (external_id);

ALTER TABLE access_groups ADD COLUMN scim_json TEXT;
ALTER TABLE access_groups ADD COLUMN source TEXT NOT NULL DEFAULT 'api';
ALTER TABLE access_groups ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
CREATE INDEX access_groups_external_id ON access_groups (external_id);

ALTER TABLE audit_events ADD COLUMN detail TEXT;

CREATE TABLE scim_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    client TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status BIGINT NOT NULL,
    duration_us BIGINT NOT NULL
);
CREATE INDEX scim_requests_at ON scim_requests (at);
