-- mneme PostgresStore: the HNSW index of the pgvector side table.
-- "{concurrently}" is CONCURRENTLY or empty, "{indexed}" the column with its operator
-- class (the full vector, or a halfvec expression above 2,000 dimensions), "{m}" and
-- "{ef_construction}" the build parameters.

CREATE INDEX {concurrently} IF NOT EXISTS idx_entry_vectors_hnsw ON {schema}.entry_vectors
USING hnsw ({indexed}) WITH (m = {m}, ef_construction = {ef_construction})
