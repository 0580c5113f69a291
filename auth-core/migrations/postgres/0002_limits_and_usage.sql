-- Per-key limits and usage counts (auth_core::apikey::sql::PostgresStore). Unqualified names:
-- created in the store's schema (the connection's search_path).

-- Rate and quota overriding the defaults, as JSON text ({"rate": ..., "quota": ...});
-- NULL when the key has none.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS limits TEXT;

-- Requests per key, minute and outcome (allowed, rate_limited, invalid, revoked, expired,
-- exhausted). Hours and days are summed when queried.
CREATE TABLE IF NOT EXISTS api_key_usage (
    key_id       TEXT   NOT NULL,
    tenant       TEXT   NOT NULL,
    bucket_start BIGINT NOT NULL,   -- the minute's start, seconds since the Unix epoch
    outcome      TEXT   NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (key_id, bucket_start, outcome)
);

CREATE INDEX IF NOT EXISTS api_key_usage_tenant ON api_key_usage (tenant, bucket_start);
