-- mneme PostgresStore schema, version 2: a version counter without one hot row.
-- "{schema}" is replaced by the quoted schema name when the store runs this file.
--
-- Every transaction that changes entries adds one to one of 64 rows of version_slots,
-- the one picked by its server process id (mod(pg_backend_pid(), 64)), so writers on
-- different connections no longer queue on a single row lock. The version is the sum
-- of the slots: it counts committed changes only, so a reader never sees it move
-- before the change it stands for is visible.
--
-- multi_process_state becomes a view with the same two rows as before:
-- version_counter (the sum) and schema_version.

CREATE TABLE IF NOT EXISTS {schema}.version_slots (
    slot  INTEGER PRIMARY KEY,
    value BIGINT  NOT NULL DEFAULT 0
) WITH (fillfactor = 50);  -- room for HOT updates: the slots change constantly

INSERT INTO {schema}.version_slots (slot, value)
SELECT s, 0 FROM generate_series(0, 63) AS s
ON CONFLICT (slot) DO NOTHING;

-- Carry the old counter over (so the version never goes back) and drop the old table,
-- unless a previous run already did.
DO $$
BEGIN
    IF (SELECT relkind FROM pg_catalog.pg_class
        WHERE oid = to_regclass('{schema}.multi_process_state')) = 'r' THEN
        UPDATE {schema}.version_slots
        SET value = value + COALESCE((SELECT CAST(value AS BIGINT)
                                      FROM {schema}.multi_process_state
                                      WHERE key = 'version_counter'), 0)
        WHERE slot = 0;
        DROP TABLE {schema}.multi_process_state;
    END IF;
END
$$;

CREATE OR REPLACE VIEW {schema}.multi_process_state AS
SELECT 'version_counter'::text AS key, CAST(sum(value) AS TEXT) AS value
FROM {schema}.version_slots
UNION ALL
SELECT key, value FROM {schema}.schema_meta WHERE key = 'schema_version';
