"""Giving a PostgresStore schema its pgvector side table, on a fresh or a filled schema.

The order is what keeps a fleet of mixed processes consistent: first the side table and
the ``vector_index`` flag, in one short transaction holding a lock on ``entries`` that
lets writes in flight finish first and holds new ones back; from then on every opener,
and every store that was already open at its next write, keeps the side table written.
Then the existing entries are copied over in batches, each namespace above the exact-scan
threshold gets its HNSW graph without blocking writers (``graphs``), a last pass adds
side rows for entries that still lack one, and ``vector_layout`` is recorded as done.
Interrupted anywhere, the next opener resumes where it stopped. An advisory lock keeps
two processes from upgrading at once; the second waits, polling, and then finds the
work done.

Progress goes to the ``mneme.postgres`` logger at INFO and, when the store was given
one, to its ``progress`` callback: tasks "backfill" (entries copied, of all entries,
counting those a stopped upgrade already copied), "index" (rows of the namespaces whose
graphs are built, after each graph) and "catch-up" (the last pass).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from mneme._errors import StoreBackendError
from mneme._types import Progress, ProgressFn
from mneme.stores.postgres.graphs import build_missing, with_cleanup
from mneme.stores.postgres.requests import (
    Atomic,
    Execute,
    GetConnection,
    PgOp,
    Sleep,
    fetch_value,
)
from mneme.stores.postgres.vector import (
    META_DIM,
    META_INDEX,
    META_LAYOUT,
    HnswOptions,
    VectorStatements,
    index_state,
    side_vectors,
)

__all__ = ["PgvectorUnavailableError", "VectorSchemaState", "ensure_extension", "read_state"]

_log = logging.getLogger("mneme.postgres")

_BACKFILL_BATCH = 5_000
_LOCK_POLL_S = 0.5
LAYOUT_GRAPHS = "graphs"


class PgvectorUnavailableError(StoreBackendError):
    """pgvector cannot be used on this server or by this role."""


@dataclass(frozen=True, slots=True)
class VectorSchemaState:
    """What a schema says about pgvector, read in one query at open."""

    extversion: str | None
    available: str | None
    flag_index: str | None
    flag_dim: int | None
    layout: str | None
    legacy_index_valid: bool | None
    has_registry: bool
    has_fresh: bool
    server_version: str

    @property
    def complete(self) -> bool:
        """Side table filled and searchable: the upgrade finished, or the schema has the
        all-namespace index of an earlier version (graphs then come as needed)."""
        return self.flag_index is not None and (
            self.layout == LAYOUT_GRAPHS or bool(self.legacy_index_valid)
        )


def read_state(schema: str) -> PgOp[VectorSchemaState]:
    from psycopg import sql

    row = yield Execute(
        sql.SQL(
            "SELECT (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'), "
            "(SELECT default_version FROM pg_catalog.pg_available_extensions "
            "WHERE name = 'vector'), "
            "(SELECT value FROM {schema}.schema_meta WHERE key = %s), "
            "(SELECT value FROM {schema}.schema_meta WHERE key = %s), "
            "(SELECT value FROM {schema}.schema_meta WHERE key = %s), "
            "current_setting('server_version'), "
            "EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'vector_graphs'), "
            "EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c "
            "ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = 'entry_vectors' AND a.attname = 'fresh' "
            "AND NOT a.attisdropped)"
        ).format(schema=sql.Identifier(schema)),
        [META_INDEX, META_DIM, META_LAYOUT, schema, schema],
        "one",
    )
    assert row is not None
    valid = (yield from index_state(schema)) if row[2] is not None else None
    return VectorSchemaState(
        extversion=row[0],
        available=row[1],
        flag_index=row[2],
        flag_dim=None if row[3] is None else int(row[3]),
        layout=row[4],
        legacy_index_valid=valid,
        server_version=str(row[5]),
        has_registry=bool(row[6]),
        has_fresh=bool(row[7]),
    )


def _fix_hint(server_version: str) -> str:
    major = server_version.split(".")[0].split()[0]
    return (
        f"install the pgvector package for PostgreSQL {major} on the database server "
        f"(e.g. postgresql-{major}-pgvector, or build it from github.com/pgvector/pgvector), "
        "run CREATE EXTENSION vector; once in this database as a superuser or the database "
        "owner, or open the store with use_pgvector='auto' or False to search in process"
    )


def _create_extension() -> PgOp[None]:
    yield Execute("CREATE EXTENSION IF NOT EXISTS vector")


def _installed_version() -> PgOp[str | None]:
    row = yield Execute(
        "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'", fetch="one"
    )
    return None if row is None else str(row[0])


def ensure_extension(state: VectorSchemaState) -> PgOp[str]:
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
        yield Atomic(_create_extension())
    except psycopg.Error as exc:
        conn = yield GetConnection()
        raise PgvectorUnavailableError(
            "PostgresStore(use_pgvector=True): pgvector is installed on the server but the "
            "extension is not created in this database, and role "
            f"{conn.info.user!r} could not create it ({str(exc).strip()}); to fix it, "
            + _fix_hint(state.server_version)
        ) from exc
    found = yield Atomic(_installed_version())
    return found or state.available


def _lock_key(schema: str) -> int:
    digest = hashlib.blake2b(f"mneme:{schema}:pgvector".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _take_lock(schema: str) -> PgOp[None]:
    # Polled: a session blocked in pg_advisory_lock holds a snapshot, which a concurrent
    # CREATE INDEX CONCURRENTLY in the lock holder would wait for forever.
    key = _lock_key(schema)
    waited = False
    while not (yield Atomic(fetch_value("SELECT pg_try_advisory_lock(%s)", [key]))):
        if not waited:
            _log.info("schema %r: waiting for another process's pgvector upgrade", schema)
            waited = True
        yield Sleep(_LOCK_POLL_S)


def upgrade(
    schema: str,
    stmts: VectorStatements,
    options: HnswOptions,
    *,
    owned_connection: bool,
    progress: ProgressFn | None = None,
) -> PgOp[None]:
    """Bring ``schema`` to: side table, flag, every entry mirrored, a graph for every
    namespace above the exact-scan threshold. Stopped at any point, it resumes where it
    was when run again."""
    yield from _take_lock(schema)
    unlock = Atomic(fetch_value("SELECT pg_advisory_unlock(%s)", [_lock_key(schema)]))
    body = _upgrade_locked(schema, stmts, options, owned_connection, progress)
    yield from with_cleanup(body, _one_request(unlock))


def _one_request(request: Atomic) -> PgOp[None]:
    yield request


def _upgrade_locked(
    schema: str,
    stmts: VectorStatements,
    options: HnswOptions,
    owned_connection: bool,
    progress: ProgressFn | None,
) -> PgOp[None]:
    state: VectorSchemaState = yield Atomic(read_state(schema))
    if state.complete:
        return  # another process finished it while we waited
    total, mirrored = yield Atomic(_create_table(schema, stmts, state))
    if total:
        _log.info("schema %r: pgvector upgrade of %d entries started", schema, total)
    yield from _backfill(schema, stmts, total, mirrored, "backfill", progress)
    # Planner statistics for the new rows before the graphs are built and used.
    yield Atomic(_rows(stmts.sql["analyze"], None, fetch="none"))
    conn = yield GetConnection()
    if conn.autocommit:
        yield from build_missing(
            schema, stmts, options, owned_connection=owned_connection, progress=progress
        )
    else:
        # CREATE INDEX CONCURRENTLY cannot run inside a transaction block.
        _log.warning(
            "schema %r: the connection is not in autocommit mode, so no HNSW graph is "
            "built now and large namespaces are searched exactly; open the store once "
            "with dsn= (or an autocommit connection) or call build_vector_indexes()",
            schema,
        )
    yield from _backfill(schema, stmts, total, 0, "catch-up", progress)
    yield Atomic(_set_meta(schema, META_LAYOUT, LAYOUT_GRAPHS))


def _report(progress: ProgressFn | None, task: str, done: int, total: int | None) -> None:
    if progress is not None:
        progress(Progress(task, done, total))


def _set_meta(schema: str, key: str, value: str) -> PgOp[None]:
    from psycopg import sql

    yield Execute(
        sql.SQL(
            "INSERT INTO {}.schema_meta (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        ).format(sql.Identifier(schema)),
        [key, value],
    )


def _create_table(
    schema: str, stmts: VectorStatements, state: VectorSchemaState
) -> PgOp[tuple[int, int]]:
    """Side table and flag in one transaction. Returns how many entries there were, and
    how many side rows (left by an upgrade that was stopped, or written since the flag
    was set)."""
    from psycopg import sql

    # The lock CREATE TABLE ... REFERENCES takes anyway, taken first and explicitly: it
    # waits for writes in flight and holds new ones back until the flag is committed, so
    # every later write statement sees the flag. (Not the version-counter row: writers
    # take that and the entries lock in either order, so holding it here could deadlock.)
    yield Execute(
        sql.SQL("LOCK TABLE {}.entries IN SHARE ROW EXCLUSIVE MODE").format(sql.Identifier(schema))
    )
    yield Execute(stmts.table)
    if state.flag_index is None:
        yield from _set_meta(schema, META_DIM, str(stmts.dim))
        yield from _set_meta(schema, META_INDEX, stmts.kind)
    row = yield Execute(stmts.sql["count_entries"], fetch="one")
    total = int(row[0]) if row else 0
    row = yield Execute(stmts.sql["count_side"], fetch="one")
    mirrored = int(row[0]) if row else 0
    return total, mirrored


def _backfill(
    schema: str,
    stmts: VectorStatements,
    total: int,
    mirrored: int,
    task: str,
    progress: ProgressFn | None,
) -> PgOp[int]:
    """Side rows for every entry that has none, in id order, a batch per transaction.
    "backfill" counts from the ``mirrored`` rows already there, out of ``total``;
    "catch-up" counts only what it adds."""
    import psycopg

    verb = "backfilled" if task == "backfill" else "caught up"
    known = total if task == "backfill" else None
    done, after = (min(mirrored, total) if task == "backfill" else 0), 0
    _report(progress, task, done, known)
    while True:
        rows = yield Atomic(_rows(stmts.sql["missing"], [after, _BACKFILL_BATCH]))
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
                yield Atomic(_rows(stmts.sql["side_fill"], params, fetch="none"))
                break
            except psycopg.errors.ForeignKeyViolation:
                # An entry was deleted between the join and the key check: try again.
                if attempt == 2:
                    raise
        done += len(rows)
        after = rows[-1][0]
        _log.info("schema %r: pgvector %s %d / %d entries", schema, verb, done, max(total, done))
        if known is None or done < known:
            _report(progress, task, done, known)
    _report(progress, task, done, done)
    return done


def _rows(query: object, params: object, fetch: str = "all") -> PgOp[object]:
    result = yield Execute(query, params, fetch, binary=True)  # type: ignore[arg-type]
    return result
