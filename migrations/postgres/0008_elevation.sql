-- Just-in-time elevation and per-call approval.

-- An elevation profile: which tools it unlocks (JSON [{connector, tools, max_risk}]), who may ask
-- (eligible group ids, JSON), who decides (one approver group), for how long at most.
CREATE TABLE elevation_profiles (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    targets TEXT NOT NULL,
    eligible_groups TEXT NOT NULL,
    approver_group TEXT NOT NULL,
    max_minutes BIGINT NOT NULL,
    justification_required BIGINT NOT NULL,
    ticket_required BIGINT NOT NULL,
    auto_approve BIGINT NOT NULL,
    requester_sets_duration BIGINT NOT NULL,
    enabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One request for an elevation and, once approved, the elevation itself. status: pending, active,
-- denied, revoked, ended (by the requester), cancelled, expired. An active row is in force only
-- while expires_at is in the future: expiry is decided at call time, `expired` is bookkeeping.
CREATE TABLE elevations (
    id TEXT PRIMARY KEY,
    profile_id TEXT NOT NULL,
    profile_name TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    subject_name TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_by_name TEXT NOT NULL,
    source TEXT NOT NULL,
    justification TEXT NOT NULL,
    ticket TEXT,
    minutes BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT,
    decided_by_name TEXT,
    comment TEXT,
    starts_at BIGINT,
    expires_at BIGINT,
    ended_at BIGINT,
    ended_by_name TEXT
);
CREATE INDEX elevations_status ON elevations (status, expires_at);
CREATE INDEX elevations_subject ON elevations (subject_id, created_at);

-- One call that needs an approver's yes, bound to the caller, the tool and the hash of its
-- arguments. status: pending, approved, denied, used, expired.
CREATE TABLE call_approvals (
    id TEXT PRIMARY KEY,
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    subject_name TEXT NOT NULL,
    client_name TEXT,
    connector TEXT NOT NULL,
    tool TEXT NOT NULL,
    args_hash TEXT NOT NULL,
    args_redacted TEXT,
    approver_group TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT,
    decided_by_name TEXT,
    comment TEXT,
    used_at BIGINT
);
CREATE INDEX call_approvals_binding ON call_approvals (subject_id, connector, tool, args_hash);
CREATE INDEX call_approvals_status ON call_approvals (status, created_at);

-- A tool whose every call needs a yes from this group (NULL: no per-call approval).
ALTER TABLE connector_tools ADD COLUMN approval_group TEXT;
