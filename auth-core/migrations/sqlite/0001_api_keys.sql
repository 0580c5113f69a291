-- API keys (auth_core::apikey::sql::SqliteStore). Only a hash of each secret is stored.
CREATE TABLE IF NOT EXISTS api_keys (
    id             TEXT    NOT NULL PRIMARY KEY,
    tenant         TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    secret_hash    BLOB    NOT NULL CHECK (length(secret_hash) = 32),
    scopes         TEXT    NOT NULL DEFAULT '[]',   -- JSON array of strings
    roles          TEXT    NOT NULL DEFAULT '[]',   -- JSON array of strings
    metadata       TEXT    NOT NULL DEFAULT 'null', -- JSON
    created_at     INTEGER NOT NULL,                -- seconds since the Unix epoch
    expires_at     INTEGER,
    revoked_at     INTEGER,
    remaining_uses INTEGER,
    last_used_at   INTEGER,
    rotated_to     TEXT
);

CREATE INDEX IF NOT EXISTS api_keys_created ON api_keys (created_at, id);
CREATE INDEX IF NOT EXISTS api_keys_tenant_created ON api_keys (tenant, created_at, id);
