-- mneme PostgresStore: one namespace's own vector index (its "graph"), a partial index
-- of the side table. "{name}" is the index name (a hash of the namespace),
-- "{concurrently}" is CONCURRENTLY or empty, "{method}" hnsw or ivfflat, "{indexed}" the
-- column with its operator class (the vector in half precision, or the full vector in
-- schemas of earlier versions), "{parameters}" the build parameters (m and
-- ef_construction, or lists), "{namespace}" the namespace as a quoted literal.
--
-- A search names the namespace in its statement, so the planner matches this predicate
-- and searches this index alone: no other tenant's rows take candidate slots, whatever
-- their number. Fresh rows (written after the index, not yet moved in) stay out of it,
-- so a single write never waits for an index insertion.

CREATE INDEX {concurrently} IF NOT EXISTS {name} ON {schema}.entry_vectors
USING {method} ({indexed}) WITH ({parameters})
WHERE namespace = {namespace} AND NOT fresh
