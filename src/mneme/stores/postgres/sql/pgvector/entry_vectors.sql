-- mneme PostgresStore: the pgvector side table (not a numbered migration: a schema
-- gets it when a store first opens it with use_pgvector enabled).
-- "{schema}" is the quoted schema name, "{dim}" the embedder dimension.
--
-- One row per entry, written in the same statement as the entry. The vectors live
-- here rather than in "entries" so that access-time updates (LRU) never reach the
-- HNSW index, and so that TOAST never moves the vector out of line. The TOAST target
-- of a page keeps a row from going through the toaster at all: above the default
-- (2 kB) each row paid a compression attempt on its vector that could not succeed.

CREATE TABLE IF NOT EXISTS {schema}.entry_vectors (
    id         BIGINT PRIMARY KEY REFERENCES {schema}.entries (id) ON DELETE CASCADE,
    namespace  TEXT   NOT NULL,
    -- created_at + ttl; NULL when the entry never expires.
    expires_at BIGINT,
    -- NULL for a zero (or otherwise unusable) embedding: never indexed, never returned.
    embedding  vector({dim}),
    -- Written into a namespace that has a graph, and not yet in that graph: searched
    -- exactly beside the graph until a background pass moves it in.
    fresh      BOOLEAN NOT NULL DEFAULT false
) WITH (fillfactor = 90, toast_tuple_target = 8160);

-- Side tables of earlier versions get the column at open (no rewrite: a constant default).
ALTER TABLE {schema}.entry_vectors ADD COLUMN IF NOT EXISTS fresh BOOLEAN NOT NULL DEFAULT false;

ALTER TABLE {schema}.entry_vectors ALTER COLUMN embedding SET STORAGE MAIN;

-- Namespace size for routing, and the exact scan of small namespaces.
CREATE INDEX IF NOT EXISTS idx_entry_vectors_ns ON {schema}.entry_vectors (namespace);

-- The rows a search reads beside a namespace's graph, and the background pass's queue.
CREATE INDEX IF NOT EXISTS idx_entry_vectors_fresh ON {schema}.entry_vectors (namespace)
WHERE fresh;

-- Namespaces that have (or are getting) an HNSW graph of their own. A row is written
-- before its concurrent build starts, so a build that died half way is found and
-- redone; the index's validity is in pg_index.
CREATE TABLE IF NOT EXISTS {schema}.vector_graphs (
    namespace  TEXT PRIMARY KEY,
    index_name TEXT NOT NULL UNIQUE,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
