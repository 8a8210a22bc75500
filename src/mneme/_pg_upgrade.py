"""Giving a PostgresStore schema its pgvector side table, on a fresh or a filled schema.

The order is what keeps a fleet of mixed processes consistent: first the side table and
the ``vector_index`` flag, in one short transaction holding a lock on ``entries`` that
lets writes in flight finish first and holds new ones back; from then on every opener,
and every store that was already open at its next write, keeps the side table written.
Then the existing entries are copied over in batches, the HNSW index is built without
blocking writers, and a last pass adds side rows for entries that still lack one. An
advisory lock keeps two processes from upgrading at once; the second waits, polling,
and then finds the work done.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import StoreBackendError
from ._pg_vector import (
    META_DIM,
    META_INDEX,
    HnswOptions,
    VectorStatements,
    index_state,
    side_vectors,
)

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["PgvectorUnavailableError", "VectorSchemaState", "ensure_extension", "read_state"]

_log = logging.getLogger("mneme.postgres")

_BACKFILL_BATCH = 5_000
_LOCK_POLL_S = 0.5
# pgvector's HNSW build needs about 2.4 kB per row at 384 dimensions to stay in memory.
_BUILD_BYTES_PER_DIM = 2_400 / 384
_BUILD_MEMORY_MAX_KB = 1024 * 1024


class PgvectorUnavailableError(StoreBackendError):
    """pgvector cannot be used on this server or by this role."""


@dataclass(frozen=True, slots=True)
class VectorSchemaState:
    """What a schema says about pgvector, read in one query at open."""

    extversion: str | None
    available: str | None
    flag_index: str | None
    flag_dim: int | None
    index_valid: bool | None
    server_version: str


def read_state(conn: Connection[Any], schema: str) -> VectorSchemaState:
    from psycopg import sql

    row = conn.execute(
        sql.SQL(
            "SELECT (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'), "
            "(SELECT default_version FROM pg_catalog.pg_available_extensions "
            "WHERE name = 'vector'), "
            "(SELECT value FROM {schema}.schema_meta WHERE key = %s), "
            "(SELECT value FROM {schema}.schema_meta WHERE key = %s), "
            "current_setting('server_version')"
        ).format(schema=sql.Identifier(schema)),
        [META_INDEX, META_DIM],
    ).fetchone()
    assert row is not None
    return VectorSchemaState(
        extversion=row[0],
        available=row[1],
        flag_index=row[2],
        flag_dim=None if row[3] is None else int(row[3]),
        index_valid=index_state(conn, schema) if row[2] is not None else None,
        server_version=str(row[4]),
    )


def _fix_hint(server_version: str) -> str:
    major = server_version.split(".")[0].split()[0]
    return (
        f"install the pgvector package for PostgreSQL {major} on the database server "
        f"(e.g. postgresql-{major}-pgvector, or build it from github.com/pgvector/pgvector), "
        "run CREATE EXTENSION vector; once in this database as a superuser or the database "
        "owner, or open the store with use_pgvector='auto' or False to search in process"
    )


def ensure_extension(conn: Connection[Any], state: VectorSchemaState) -> str:
    """The installed pgvector version, creating the extension when the role may."""
    import psycopg

    if state.extversion is not None:
        return state.extversion
    if state.available is None:
        raise PgvectorUnavailableError(
            "PostgresStore(use_pgvector=True): the pgvector extension is not available on "
            f"this PostgreSQL {state.server_version} server; to fix it, "
            + _fix_hint(state.server_version)
        )
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.Error as exc:
        user = conn.info.user
        raise PgvectorUnavailableError(
            "PostgresStore(use_pgvector=True): pgvector is installed on the server but the "
            f"extension is not created in this database, and role {user!r} could not create "
            f"it ({str(exc).strip()}); to fix it, " + _fix_hint(state.server_version)
        ) from exc
    found = _in_txn(
        conn,
        lambda: conn.execute(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'"
        ).fetchone(),
    )
    return str(found[0]) if found else state.available


def _lock_key(schema: str) -> int:
    digest = hashlib.blake2b(f"mneme:{schema}:pgvector".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _in_txn(conn: Connection[Any], body: Callable[[], Any]) -> Any:
    with conn.transaction():
        return body()


def _take_lock(conn: Connection[Any], schema: str) -> None:
    # Polled: a session blocked in pg_advisory_lock holds a snapshot, which a concurrent
    # CREATE INDEX CONCURRENTLY in the lock holder would wait for forever.
    key = _lock_key(schema)
    waited = False
    while True:
        row = _in_txn(conn, lambda: conn.execute("SELECT pg_try_advisory_lock(%s)", [key]))
        if row.fetchone()[0]:
            return
        if not waited:
            _log.info("schema %r: waiting for another process's pgvector upgrade", schema)
            waited = True
        time.sleep(_LOCK_POLL_S)


def _release_lock(conn: Connection[Any], schema: str) -> None:
    _in_txn(conn, lambda: conn.execute("SELECT pg_advisory_unlock(%s)", [_lock_key(schema)]))


def upgrade(
    conn: Connection[Any],
    schema: str,
    stmts: VectorStatements,
    options: HnswOptions,
    *,
    owned_connection: bool,
) -> None:
    """Bring ``schema`` to: side table, flag, every entry mirrored, valid HNSW index."""
    _take_lock(conn, schema)
    try:
        state: VectorSchemaState = _in_txn(conn, lambda: read_state(conn, schema))
        if state.flag_index is not None and state.index_valid:
            return  # another process finished it while we waited
        total = _create_table(conn, schema, stmts, options, state)
        if _in_txn(conn, lambda: index_state(conn, schema)) is not True:
            if total:
                _log.info("schema %r: pgvector upgrade of %d entries started", schema, total)
            _backfill(conn, schema, stmts, total, "backfilled")
            _build_index(conn, schema, stmts, options, total, owned_connection)
        _backfill(conn, schema, stmts, total, "caught up")
    finally:
        _release_lock(conn, schema)


def _create_table(
    conn: Connection[Any],
    schema: str,
    stmts: VectorStatements,
    options: HnswOptions,
    state: VectorSchemaState,
) -> int:
    """Side table and flag in one transaction; on an empty table the index too.
    Returns how many entries there were."""
    from psycopg import sql

    meta = sql.SQL(
        "INSERT INTO {}.schema_meta (key, value) VALUES (%s, %s) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    ).format(sql.Identifier(schema))
    # The lock CREATE TABLE ... REFERENCES takes anyway, taken first and explicitly: it
    # waits for writes in flight and holds new ones back until the flag is committed, so
    # every later write statement sees the flag. (Not the version-counter row: writers
    # take that and the entries lock in either order, so holding it here could deadlock.)
    lock = sql.SQL("LOCK TABLE {}.entries IN SHARE ROW EXCLUSIVE MODE").format(
        sql.Identifier(schema)
    )

    def body() -> int:
        conn.execute(lock)
        conn.execute(stmts.table)
        if state.flag_index is None:
            conn.execute(meta, [META_DIM, str(stmts.dim)])
            conn.execute(meta, [META_INDEX, stmts.kind])
        row = conn.execute(stmts.sql["count_entries"]).fetchone()
        total = int(row[0]) if row else 0
        if total == 0 and index_state(conn, schema) is None:
            conn.execute(stmts.create_index(options, concurrently=False))
        return total

    total: int = _in_txn(conn, body)
    return total


def _backfill(
    conn: Connection[Any], schema: str, stmts: VectorStatements, total: int, verb: str
) -> int:
    """Side rows for every entry that has none, in id order, a batch per transaction."""
    import psycopg

    done, after = 0, 0
    while True:
        with conn.transaction(), conn.cursor(binary=True) as cur:
            rows = cur.execute(stmts.sql["missing"], [after, _BACKFILL_BATCH]).fetchall()
        if not rows:
            break
        vectors = side_vectors([bytes(r[4]) for r in rows], stmts.dim)
        params = [
            [r[0] for r in rows],
            [r[1] for r in rows],
            [None if r[3] is None else r[2] + r[3] for r in rows],
            vectors,
        ]
        for attempt in range(3):
            try:
                with conn.transaction():
                    conn.execute(stmts.sql["side_fill"], params)
                break
            except psycopg.errors.ForeignKeyViolation:
                # An entry was deleted between the join and the key check: try again.
                if attempt == 2:
                    raise
        done += len(rows)
        after = rows[-1][0]
        _log.info("schema %r: pgvector %s %d / %d entries", schema, verb, done, max(total, done))
    return done


def _build_memory_kb(rows: int, dim: int, halfvec: bool) -> int:
    per_row = _BUILD_BYTES_PER_DIM * dim * (0.5 if halfvec else 1.0)
    return int(min(max(rows * per_row * 1.25 / 1024, 64 * 1024), _BUILD_MEMORY_MAX_KB))


def _build_index(
    conn: Connection[Any],
    schema: str,
    stmts: VectorStatements,
    options: HnswOptions,
    rows: int,
    owned_connection: bool,
) -> None:
    from psycopg import sql

    index = sql.SQL("{}.{}").format(
        sql.Identifier(schema), sql.Identifier("idx_entry_vectors_hnsw")
    )
    want_kb = _build_memory_kb(rows, stmts.dim, stmts.kind == "hnsw_halfvec")
    row = _in_txn(
        conn,
        lambda: conn.execute(
            "SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = 'maintenance_work_mem'"
        ).fetchone(),
    )
    have_kb = int(row[0]) if row else 0
    started = time.monotonic()
    _log.info("schema %r: building the HNSW index over %d entries", schema, rows)
    if conn.autocommit:
        if index_state(conn, schema) is False:  # left by a failed concurrent build
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(index))
        raise_memory = owned_connection and want_kb > have_kb
        if raise_memory:
            conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", [f"{want_kb}kB"])
        elif want_kb > have_kb:
            _log.info(
                "schema %r: maintenance_work_mem is %d kB; about %d kB would keep the HNSW "
                "build in memory (the store does not change settings of a connection it "
                "does not own)",
                schema,
                have_kb,
                want_kb,
            )
        try:
            conn.execute(stmts.create_index(options, concurrently=True))
        finally:
            if raise_memory:
                conn.execute("RESET maintenance_work_mem")
    else:
        # CREATE INDEX CONCURRENTLY cannot run inside a transaction block.
        _log.warning(
            "schema %r: the connection is not in autocommit mode, so the HNSW index is built "
            "inside a transaction and writers wait until it is done; open the store once "
            "with a dsn= (or an autocommit connection) to build it without blocking",
            schema,
        )

        def build() -> None:
            if index_state(conn, schema) is False:
                conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(index))
            if want_kb > have_kb:
                conn.execute(
                    "SELECT set_config('maintenance_work_mem', %s, true)", [f"{want_kb}kB"]
                )
            conn.execute(stmts.create_index(options, concurrently=False))

        _in_txn(conn, build)
    _log.info("schema %r: HNSW index built in %.1f s", schema, time.monotonic() - started)
