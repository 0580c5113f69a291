-- Signing keys of a rotating issuer (auth_core::rotation, SqliteStore). `private_key` holds
-- PKCS#8 private keys: protect this database like a secret. Times in milliseconds since the
-- Unix epoch.
CREATE TABLE IF NOT EXISTS signing_keys (
    kid                TEXT    NOT NULL PRIMARY KEY,   -- RFC 7638 thumbprint
    alg                TEXT    NOT NULL,
    private_key        BLOB    NOT NULL,
    state              TEXT    NOT NULL CHECK (state IN ('next', 'current', 'retired')),
    created_at         INTEGER NOT NULL,
    activate_at        INTEGER NOT NULL,
    deactivated_at     INTEGER,
    retire_at          INTEGER,
    max_token_lifetime INTEGER NOT NULL                -- milliseconds
);

-- At most one `next` and one `current` key, whatever the writers do.
CREATE UNIQUE INDEX IF NOT EXISTS signing_keys_one_per_state
    ON signing_keys (state) WHERE state <> 'retired';

-- The ring's generation: every change increments it, conditionally (optimistic concurrency).
CREATE TABLE IF NOT EXISTS signing_key_ring (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT OR IGNORE INTO signing_key_ring (id, generation) VALUES (1, 0);
