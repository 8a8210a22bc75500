"""SQL statements of PostgresStore, as templates.

``{schema}`` becomes the quoted schema identifier and ``{columns}`` the entry columns
when the store composes them with ``psycopg.sql`` at open; values are always bound
parameters (``%s``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psycopg.sql import Composable, Composed

__all__ = ["COLUMNS", "FRAGMENTS", "ITER_VECTORS_SQL", "STATEMENTS", "VERSION_SLOTS", "compose"]

COLUMNS = (
    "id, namespace, query_hash, query, response, embedding, metadata, "
    "created_at, last_accessed_at, ttl, access_count"
)

STAGE_COLUMNS = (
    "namespace, query_hash, query, response, embedding, metadata, created_at, "
    "last_accessed_at, ttl, access_count"
)
STAGE_COLUMNS_DDL = (
    "namespace TEXT, query_hash TEXT, query TEXT, response TEXT, embedding BYTEA, "
    "metadata TEXT, created_at BIGINT, last_accessed_at BIGINT, ttl BIGINT, access_count BIGINT"
)
# Staged rows stay in line up to a page: the default (2 kB) sent most of them through
# TOAST (a compression attempt, then a second table and its index) on the way in.
STAGE_OPTIONS = "WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS"


def stage_statements(table: str, ddl: str, columns: str) -> dict[str, str]:
    """The statements of a session's staging table ``pg_temp.<table>``: whether it
    exists, its creation and storage, its COPY, and its emptying between chunks."""
    # A staged row above the TOAST target (every row that carries a 1536-dim vector
    # beside its embedding) had its largest compressible values compressed first: the
    # embedding, an attempt that cannot succeed on float data, then the response. About
    # 7% of the server's time in such a load. Stored EXTERNAL, what must go out of line
    # goes as it is. Set once, when the session creates the table (ALTER, since STORAGE in
    # CREATE TABLE needs PostgreSQL 16).
    external = ", ".join(
        f"ALTER COLUMN {name} SET STORAGE EXTERNAL"
        for name in ("query", "response", "embedding", "metadata")
    )
    return {
        "stage_exists": f"SELECT to_regclass('pg_temp.{table}') IS NOT NULL",
        "stage": f"CREATE TEMP TABLE {table} ({ddl}) {STAGE_OPTIONS}",
        "stage_storage": f"ALTER TABLE pg_temp.{table} {external}",
        "stage_copy": f"COPY pg_temp.{table} ({columns}) FROM STDIN (FORMAT BINARY)",
        # Between the chunks of one load (the transaction's end empties it too).
        "stage_empty": f"TRUNCATE pg_temp.{table}",
    }


ITER_VECTORS_SQL = (
    "SELECT id, namespace, embedding FROM {schema}.entries WHERE id > %s ORDER BY id LIMIT %s"
)
"""What the in-process index is rebuilt from: id, namespace, embedding, nothing else."""

VERSION_SLOTS = 64
"""Rows of ``version_slots`` (the 64 in the statements below and in migration 0002); a
connection writes to the one its server process id picks."""

FRAGMENTS: dict[str, str] = {
    "bump": "bump AS (UPDATE {schema}.version_slots SET value = value + 1 "
    "WHERE slot = mod(pg_backend_pid(), 64) RETURNING 1)",
    "upsert_entry": "ON CONFLICT (namespace, query_hash) DO UPDATE SET query = EXCLUDED.query, "
    "response = EXCLUDED.response, embedding = EXCLUDED.embedding, "
    "metadata = EXCLUDED.metadata, created_at = EXCLUDED.created_at, "
    "last_accessed_at = EXCLUDED.last_accessed_at, ttl = EXCLUDED.ttl, "
    "access_count = EXCLUDED.access_count",
    # One upserted entry, after WITH {bump}.
    "entry_insert": "INSERT INTO {schema}.entries (namespace, query_hash, query, response, "
    "embedding, metadata, created_at, last_accessed_at, ttl, access_count) "
    "SELECT %s::text, %s::text, %s::text, %s::text, %s::bytea, %s::jsonb, %s::bigint, "
    "%s::bigint, %s::bigint, %s::bigint FROM bump {upsert_entry}",
    # A batch as rows, in input order (ord); {batch_extra} adds the pgvector column.
    "batch_rows": "rows AS (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::bytea[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[], "
    "%s::bigint[]{batch_extra_type}) WITH ORDINALITY AS r(namespace, query_hash, query, "
    "response, embedding, metadata, created_at, last_accessed_at, ttl, access_count"
    "{batch_extra_col}, ord))",
    # The batch upsert, after WITH {bump}, {batch_rows}.
    "batch_insert": "INSERT INTO {schema}.entries (namespace, query_hash, query, response, "
    "embedding, metadata, created_at, last_accessed_at, ttl, access_count) "
    "SELECT namespace, query_hash, query, response, embedding, metadata::jsonb, created_at, "
    "last_accessed_at, ttl, access_count FROM rows, bump ORDER BY ord {upsert_entry}",
    # Returned by the plain-storage writes: a store that opened before the schema got its
    # vector side table learns from its next write that it must keep that table written.
    "vector_flag": "(SELECT value FROM {schema}.schema_meta WHERE key = 'vector_index')",
}
"""Pieces shared by several statements, spliced in by ``compose``."""


def compose(text: str, schema: str, **extra: Composable) -> Composed:
    """``text`` with ``{schema}``, ``{columns}`` and the ``FRAGMENTS`` filled in."""
    from psycopg import sql

    ident = sql.Identifier(schema)
    values: dict[str, Composable] = {
        "batch_extra_type": sql.SQL(""),
        "batch_extra_col": sql.SQL(""),
        **extra,
    }
    # Fragments may use each other and the extras; resolve them innermost first.
    for name in ("bump", "upsert_entry", "vector_flag", "batch_rows"):
        values[name] = sql.SQL(FRAGMENTS[name]).format(schema=ident, **values)
    for name in ("entry_insert", "batch_insert"):
        values[name] = sql.SQL(FRAGMENTS[name]).format(schema=ident, **values)
    return sql.SQL(text).format(schema=ident, columns=sql.SQL(COLUMNS), **values)


STATEMENTS: dict[str, str] = {
    # A write transaction locks its version slot first and entry rows after, the order
    # the one-statement upserts below take them in too.
    "lock": "SELECT 1 FROM {schema}.version_slots WHERE slot = mod(pg_backend_pid(), 64) "
    "FOR UPDATE",
    "bump": "UPDATE {schema}.version_slots SET value = value + 1 "
    "WHERE slot = mod(pg_backend_pid(), 64)",
    # One statement, one snapshot: the sum counts exactly the changes committed before it.
    "version": "SELECT CAST(sum(value) AS BIGINT) FROM {schema}.version_slots",
    # The bump feeds the INSERT, so it runs (and takes the slot lock) first.
    "insert": "WITH {bump} {entry_insert} RETURNING id, {vector_flag}",
    # As above: the join with bump makes the slot lock come before any entry row.
    "insert_many": "WITH {bump}, {batch_rows} {batch_insert} "
    "RETURNING namespace, query_hash, id, {vector_flag}",
    # Bulk loads on a connection the store owns: COPY a chunk into a session's staging
    # table (emptied at commit), upsert from it, empty it for the next chunk.
    **stage_statements("mneme_stage", STAGE_COLUMNS_DDL + ", ord BIGINT", STAGE_COLUMNS + ", ord"),
    "insert_staged": "WITH {bump}, rows AS (SELECT * FROM pg_temp.mneme_stage) {batch_insert} "
    "RETURNING namespace, query_hash, id, {vector_flag}",
    "by_hashes": "SELECT {columns} FROM {schema}.entries "
    "WHERE namespace = %s AND query_hash = ANY(%s::text[])",
    "delete_ids": "WITH d AS (DELETE FROM {schema}.entries WHERE id = ANY(%s::bigint[]) "
    "RETURNING namespace) SELECT namespace, count(*) FROM d GROUP BY namespace",
    "oldest": "SELECT min(created_at) FROM {schema}.entries",
    # GREATEST: touches from several processes never move an access time backwards.
    "flush": "UPDATE {schema}.entries e SET last_accessed_at = GREATEST(e.last_accessed_at, v.t), "
    "access_count = e.access_count + v.n FROM (SELECT unnest(%s::bigint[]) AS id, "
    "unnest(%s::bigint[]) AS t, unnest(%s::bigint[]) AS n) v WHERE e.id = v.id",
    "by_hash": "SELECT {columns} FROM {schema}.entries WHERE namespace = %s AND query_hash = %s",
    "by_id": "SELECT {columns} FROM {schema}.entries WHERE id = %s",
    "since": "SELECT {columns} FROM {schema}.entries WHERE id > %s ORDER BY id LIMIT %s",
    "vectors": ITER_VECTORS_SQL,
    "count": "SELECT count(*) FROM {schema}.entries",
    "count_ns": "SELECT count(*) FROM {schema}.entries WHERE namespace = %s",
    "namespaces": "SELECT DISTINCT namespace FROM {schema}.entries",
    "lru": "SELECT id FROM {schema}.entries ORDER BY last_accessed_at, id LIMIT %s",
    "lru_ns": "SELECT id FROM {schema}.entries WHERE namespace = %s "
    "ORDER BY last_accessed_at, id LIMIT %s",
    "delete_id": "DELETE FROM {schema}.entries WHERE id = %s",
    "delete_expired": "DELETE FROM {schema}.entries "
    "WHERE ttl IS NOT NULL AND created_at <= %s - ttl",
    "delete_expired_ns": "DELETE FROM {schema}.entries "
    "WHERE ttl IS NOT NULL AND created_at <= %s - ttl AND namespace = %s",
    "clear_ns": "DELETE FROM {schema}.entries WHERE namespace = %s",
    "quota_set": "INSERT INTO {schema}.namespace_quotas (namespace, max_entries) VALUES (%s, %s) "
    "ON CONFLICT (namespace) DO UPDATE SET max_entries = EXCLUDED.max_entries",
    "quota_del": "DELETE FROM {schema}.namespace_quotas WHERE namespace = %s",
    "quota_get": "SELECT max_entries FROM {schema}.namespace_quotas WHERE namespace = %s",
    "meta_get": "SELECT value FROM {schema}.schema_meta WHERE key = %s",
    "meta_set": "INSERT INTO {schema}.schema_meta (key, value) VALUES (%s, %s) "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    "meta_default": "INSERT INTO {schema}.schema_meta (key, value) VALUES (%s, %s) "
    "ON CONFLICT (key) DO NOTHING",
    # Rows in one order for every writer: two processes adding to the same counters in
    # different orders would lock them crosswise and deadlock.
    "counters_add": "INSERT INTO {schema}.cache_counters AS c (namespace, name, value) "
    "SELECT s, n, v FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS t(s, n, v) "
    "ORDER BY s, n "
    "ON CONFLICT (namespace, name) DO UPDATE SET value = c.value + EXCLUDED.value",
    "counters": "SELECT name, sum(value)::bigint FROM {schema}.cache_counters GROUP BY name",
    "counters_ns": "SELECT name, value FROM {schema}.cache_counters WHERE namespace = %s",
    "integrity": "SELECT "
    "(SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename IN "
    "('entries', 'cache_counters', 'namespace_quotas', 'version_slots', 'schema_meta')), "
    "(SELECT bool_and(i.indisvalid AND i.indisunique) FROM pg_catalog.pg_index i "
    "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid JOIN pg_catalog.pg_namespace n "
    "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'idx_entries_ns_hash'), "
    "(SELECT value FROM {schema}.multi_process_state WHERE key = 'version_counter'), "
    "(SELECT count(*) FROM {schema}.version_slots), "
    "(SELECT value FROM {schema}.schema_meta WHERE key = 'embedder_fingerprint'), "
    "(SELECT value FROM {schema}.schema_meta WHERE key = 'embedder_dim'), "
    "(SELECT value FROM {schema}.schema_meta WHERE key = 'schema_version')",
}
