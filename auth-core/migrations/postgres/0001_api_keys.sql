-- API keys (auth_core::apikey::sql::PostgresStore). Only a hash of each secret is stored.
CREATE TABLE IF NOT EXISTS api_keys (
    id             TEXT   NOT NULL PRIMARY KEY,
    tenant         TEXT   NOT NULL,
    name           TEXT   NOT NULL,
    secret_hash    BYTEA  NOT NULL CHECK (octet_length(secret_hash) = 32),
    scopes         JSONB  NOT NULL DEFAULT '[]',   -- array of strings
    roles          JSONB  NOT NULL DEFAULT '[]',   -- array of strings
    metadata       JSONB  NOT NULL DEFAULT 'null',
    created_at     BIGINT NOT NULL,                -- seconds since the Unix epoch
    expires_at     BIGINT,
    revoked_at     BIGINT,
    remaining_uses BIGINT,
    last_used_at   BIGINT,
    rotated_to     TEXT
);

CREATE INDEX IF NOT EXISTS api_keys_created ON api_keys (created_at, id);
CREATE INDEX IF NOT EXISTS api_keys_tenant_created ON api_keys (tenant, created_at, id);
