-- Which definition a connector tool's review hash covers: 1 = name, description and input schema
-- (older releases); 2 = also the title, the annotations as sent and the output schema.
-- Rows of version 1 are re-hashed on their next discovery without asking for a new review when
-- the version-1 parts are unchanged (the extra parts are taken as reviewed then).
ALTER TABLE connector_tools ADD COLUMN hash_version BIGINT NOT NULL DEFAULT 1;
