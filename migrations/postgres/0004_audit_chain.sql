-- Tamper evidence: every audit event carries the hash of the one before it and its own hash
-- (SHA-256 over the previous hash and the event's canonical form). Rows written before this
-- migration have no hash and are reported as unchained by `toolgate audit verify`.
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
