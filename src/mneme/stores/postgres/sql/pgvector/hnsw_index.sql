-- mneme PostgresStore: one namespace's HNSW graph, a partial index of the side table.
-- "{name}" is the graph's index name (a hash of the namespace), "{concurrently}" is
-- CONCURRENTLY or empty, "{indexed}" the column with its operator class (the full
-- vector, or a halfvec expression above 2,000 dimensions), "{m}" and "{ef_construction}"
-- the build parameters, "{namespace}" the namespace as a quoted literal.
--
-- A search binds the namespace and runs with a custom plan, so the planner matches
-- this predicate and walks this graph alone: no other tenant's rows take candidate
-- slots, whatever their number. Fresh rows (written after the graph, not yet moved in)
-- stay out of it, so a single write never waits for a graph insertion.

CREATE INDEX {concurrently} IF NOT EXISTS {name} ON {schema}.entry_vectors
USING hnsw ({indexed}) WITH (m = {m}, ef_construction = {ef_construction})
WHERE namespace = {namespace} AND NOT fresh
