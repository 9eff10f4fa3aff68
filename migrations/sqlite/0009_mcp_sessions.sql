-- MCP sessions any replica can serve: what a streamable-HTTP session needs to be re-created
-- after a request lands on a replica that did not open it (no sticky load balancing).
-- id_hash: SHA-256 (hex) of the Mcp-Session-Id; service: which endpoint made it (`aggregate` for
-- /mcp, `connector` for /mcp/{connector}); owner: the principal that opened it (`kind:id`), set
-- before the id reaches the client, NULL only while the handshake is under way; state: the
-- client's initialize parameters (JSON). Rows unused for a day are removed.
CREATE TABLE mcp_sessions (
    id_hash TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    owner TEXT,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX mcp_sessions_last_seen ON mcp_sessions (last_seen_at);
