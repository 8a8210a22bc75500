-- mneme PostgresStore schema, version 1.
-- "{schema}" is replaced by the quoted schema name when the store runs this file.
-- Idempotent, so a half-remembered version can never break a re-run.

CREATE TABLE IF NOT EXISTS {schema}.entries (
    id               BIGSERIAL PRIMARY KEY,
    namespace        TEXT   NOT NULL,
    query_hash       TEXT   NOT NULL,
    query            TEXT   NOT NULL,
    response         TEXT   NOT NULL,
    embedding        BYTEA  NOT NULL,
    metadata         JSONB,
    created_at       BIGINT NOT NULL,
    last_accessed_at BIGINT NOT NULL,
    ttl              BIGINT,
    access_count     BIGINT NOT NULL DEFAULT 0,
    -- The unique constraint's own index is the Layer-1 lookup index; naming it
    -- avoids a second, redundant btree on the same columns.
    CONSTRAINT idx_entries_ns_hash UNIQUE (namespace, query_hash)
);

-- LRU eviction, per namespace and (with a leading-column skip) globally.
CREATE INDEX IF NOT EXISTS idx_entries_ns_lru ON {schema}.entries (namespace, last_accessed_at);
-- TTL vacuum.
CREATE INDEX IF NOT EXISTS idx_entries_created_at ON {schema}.entries (created_at);

CREATE TABLE IF NOT EXISTS {schema}.cache_counters (
    namespace TEXT   NOT NULL,
    name      TEXT   NOT NULL,
    value     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, name)
);

CREATE TABLE IF NOT EXISTS {schema}.namespace_quotas (
    namespace   TEXT   PRIMARY KEY,
    max_entries BIGINT NOT NULL
);

-- version_counter: bumped in the same transaction as every insert and delete, so
-- other processes can tell cheaply whether anything changed.
CREATE TABLE IF NOT EXISTS {schema}.multi_process_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.schema_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO {schema}.multi_process_state (key, value)
VALUES ('version_counter', '0')
ON CONFLICT (key) DO NOTHING;
