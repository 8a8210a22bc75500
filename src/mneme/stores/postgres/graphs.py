"""One vector index ("graph") per large namespace: finding which namespaces need one,
building it without blocking anyone, reshaping it as the namespace grows, and reporting
what exists.

A namespace of up to ``ivfflat_max_rows`` rows gets an IVFFlat index with lists sized
for its rows; a larger one an HNSW graph. An IVFFlat index is rebuilt beside the old
one once its namespace outgrows its lists (or IVFFlat): the new index gets the other of
the namespace's two names, the registry is switched to it, and the old one is dropped.
A crash in between leaves a working index and an unregistered one, which the next
``build_missing`` drops.

A graph is a partial index of the side table (``WHERE namespace = '<ns>'``), built with
``CREATE INDEX CONCURRENTLY`` on an autocommit connection: readers and writers of every
namespace carry on meanwhile, and the namespace is searched exactly until its graph is
valid. The namespace is recorded in ``vector_graphs`` before the build starts, so a
build that died half way (a crash, a cancelled statement) leaves an invalid index that
the next build drops and redoes; an invalid index is never used by the planner, so the
store keeps working. A per-namespace advisory lock keeps two processes from building
the same graph. Schemas of earlier versions have one HNSW index over every namespace;
it stays in use until every large namespace has its own graph, and is then dropped.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from mneme._types import Progress, ProgressFn
from mneme.stores.postgres.requests import (
    Atomic,
    Execute,
    GetConnection,
    PgOp,
    Sleep,
    execute,
    fetch_all,
    fetch_row,
    fetch_value,
)
from mneme.stores.postgres.vector import (
    GRAPH_PREFIX,
    IVFFLAT_LISTS,
    LEGACY_INDEX_NAME,
    HnswOptions,
    VectorStatements,
    graph_name,
    index_state,
)

__all__ = [
    "VectorGraph",
    "build_graph",
    "GRAPH_PREFIX",
    "build_memory_kb",
    "build_missing",
    "builder_lock",
    "drop_unregistered",
    "sibling_name",
    "with_cleanup",
    "release_builder_lock",
    "fresh_lock_key",
    "graph_states",
    "move_fresh",
    "namespace_graph_check",
    "retire_legacy_index",
]

_log = logging.getLogger("mneme.postgres")

# pgvector's HNSW build needs about 2.4 kB per row at 384 dimensions to stay in memory.
_BUILD_BYTES_PER_DIM = 2_400 / 384
_LOCK_POLL_S = 0.2
BUILD_MEMORY_MAX_KB = 1024 * 1024

_T = TypeVar("_T")

GraphState = Literal["exact", "pending", "building", "ready", "invalid"]


@dataclass(frozen=True, slots=True)
class VectorGraph:
    """Where a namespace's Layer-2 search runs.

    ``state``: "ready" (searched through its own valid index), "building" (a
    concurrent build is under way), "pending" (large enough for a graph, not built
    yet), "invalid" (a build died; the next build redoes it), or "exact" (small
    enough to scan). Every state but "ready" is searched exactly, so answers stay
    right while a graph is missing; only the time grows. ``fresh_rows``: rows written
    since the graph was built and not yet moved into it by the background pass (read
    exactly beside the graph meanwhile)."""

    namespace: str
    rows: int
    state: GraphState
    index_name: str | None
    fresh_rows: int = 0
    method: str | None = None
    """'hnsw' or 'ivfflat' when the namespace has an index, else None."""
    lists: int | None = None
    """An IVFFlat index's lists."""


def _lock_key(schema: str, namespace: str) -> int:
    digest = hashlib.blake2b(f"mneme:{schema}:graph:{namespace}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def fresh_lock_key(schema: str) -> int:
    """The advisory lock of a schema's fresh-row pass: one pass at a time per schema, so
    graph insertions in the background take one server process, whatever the fleet."""
    return _lock_key(schema, "\x00fresh")


def move_fresh(vec: VectorStatements, schema: str, batch: int) -> PgOp[int | None]:
    """Move up to ``batch`` fresh rows into their graphs, in one transaction: how many
    moved, or None when another process's pass holds the schema's lock."""

    def move() -> PgOp[int | None]:
        row = yield Execute("SELECT pg_try_advisory_xact_lock(%s)", [fresh_lock_key(schema)], "one")
        if not row[0]:
            return None
        moved: int = yield Execute(vec.sql["flush_fresh"], [batch], "rowcount")
        return moved

    result: int | None = yield Atomic(move())
    return result


def builder_lock(schema: str, *, wait: bool) -> PgOp[bool]:
    """The schema's graph-builder lock: one build or rebuild at a time per schema
    (concurrent builds on one table wait on each other anyway, and a REINDEX beside a
    build can deadlock). Polled, never waited on in the server: a session blocked in
    pg_advisory_lock holds a snapshot that a concurrent build would wait for forever."""
    key = _lock_key(schema, "\x00builder")
    while not (yield Atomic(fetch_value("SELECT pg_try_advisory_lock(%s)", [key]))):
        if not wait:
            return False
        yield Sleep(_LOCK_POLL_S)
    return True


def release_builder_lock(schema: str) -> PgOp[None]:
    yield Atomic(fetch_value("SELECT pg_advisory_unlock(%s)", [_lock_key(schema, "\x00builder")]))


def namespace_graph_check(schema: str, namespace: str, threshold: int) -> PgOp[tuple[int, bool]]:
    """``namespace``'s rows, counted up to ``threshold + 1`` only (cheap), and whether it
    has a valid graph: one statement, for a connection in autocommit mode."""
    from psycopg import sql

    s = sql.Identifier(schema)
    query = sql.SQL(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM {s}.entry_vectors "
        "WHERE namespace = %s LIMIT %s) t), EXISTS ("
        "SELECT 1 FROM {s}.vector_graphs g JOIN pg_catalog.pg_class c "
        "ON c.relname = g.index_name AND c.relnamespace = %s::regnamespace "
        "JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid "
        "WHERE g.namespace = %s AND i.indisvalid)"
    ).format(s=s)
    row = yield Execute(query, [namespace, threshold + 1, schema, namespace], "one")
    return int(row[0]), bool(row[1])


def graph_states(schema: str, threshold: int) -> PgOp[list[VectorGraph]]:
    """Every namespace with its row count and where its search runs, largest first."""
    from psycopg import sql

    s = sql.Identifier(schema)
    query = sql.SQL(
        "SELECT n.namespace, n.rows, g.index_name, i.indisvalid, n.fresh, a.amname, {lists} "
        "FROM (SELECT namespace, count(*) AS rows, count(*) FILTER (WHERE fresh) AS fresh "
        "FROM {s}.entry_vectors GROUP BY namespace) n "
        "LEFT JOIN {s}.vector_graphs g USING (namespace) "
        "LEFT JOIN pg_catalog.pg_class c ON c.relname = g.index_name "
        "AND c.relnamespace = %s::regnamespace "
        "LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid "
        "LEFT JOIN pg_catalog.pg_am a ON a.oid = c.relam "
        "ORDER BY n.rows DESC, n.namespace"
    ).format(s=s, lists=sql.SQL(IVFFLAT_LISTS))
    rows = yield Atomic(fetch_all(query, [schema]))
    building = yield from _builds_running(schema)
    out = []
    for namespace, count, name, valid, fresh, method, lists in rows:
        state: GraphState
        if valid:
            state = "ready"
        elif namespace in building:
            state = "building"
        elif name is not None:
            state = "invalid"  # registered, but the build died: the next one redoes it
        else:
            state = "exact" if count <= threshold else "pending"
        shape = (str(method), int(lists) if lists else None) if valid else (None, None)
        out.append(VectorGraph(str(namespace), int(count), state, name, int(fresh), *shape))
    return out


def _builds_running(schema: str) -> PgOp[set[str]]:
    """Namespaces whose build lock some session holds right now."""
    rows = yield Atomic(
        fetch_all(
            "SELECT l.objid::bigint, l.classid::bigint FROM pg_catalog.pg_locks l "
            "WHERE l.locktype = 'advisory' AND l.granted",
            None,
        )
    )
    held = {(int(c) << 32) | int(o) for o, c in rows}
    names = yield Atomic(fetch_all(_registry_query(schema), None))
    return {str(ns) for (ns,) in names if (_lock_key(schema, str(ns)) & 0xFFFFFFFFFFFFFFFF) in held}


def sibling_name(name: str) -> str:
    """The other of a namespace's two index names: a reshaped index is built under it."""
    return name[: -len(_SIBLING)] if name.endswith(_SIBLING) else name + _SIBLING


_SIBLING = "_b"


def _registry_query(schema: str) -> Any:
    from psycopg import sql

    return sql.SQL("SELECT namespace FROM {}.vector_graphs").format(sql.Identifier(schema))


def build_memory_kb(rows: int, dim: int, halfvec: bool) -> int:
    per_row = _BUILD_BYTES_PER_DIM * dim * (0.5 if halfvec else 1.0)
    return int(min(max(rows * per_row * 1.25 / 1024, 64 * 1024), BUILD_MEMORY_MAX_KB))


def build_graph(
    schema: str,
    stmts: VectorStatements,
    options: HnswOptions,
    namespace: str,
    *,
    owned_connection: bool,
    wait: bool = True,
) -> PgOp[bool]:
    """Build ``namespace``'s graph on this autocommit connection; False when it was not
    built here (another session is building it, or, with ``wait=False``, another build
    of this schema is under way). Redoes a build that died half way."""
    if not (yield from builder_lock(schema, wait=wait)):
        return False
    return (
        yield from with_cleanup(
            _build_locked(schema, stmts, options, namespace, owned_connection),
            release_builder_lock(schema),
        )
    )


def with_cleanup(body: PgOp[_T], cleanup: PgOp[None]) -> PgOp[_T]:
    """``body``, then ``cleanup`` whether it succeeded or raised. Not when the operation
    is abandoned (closed, e.g. its task cancelled): its connection is being closed, and
    the session's locks and settings go with it."""
    try:
        result = yield from body
    except GeneratorExit:
        raise
    except BaseException:
        yield from cleanup
        raise
    yield from cleanup
    return result


def _build_locked(
    schema: str,
    stmts: VectorStatements,
    options: HnswOptions,
    namespace: str,
    owned_connection: bool,
) -> PgOp[bool]:
    key = _lock_key(schema, namespace)  # says "building" to vector_index_status
    if not (yield Atomic(fetch_value("SELECT pg_try_advisory_lock(%s)", [key]))):
        return False
    raised: list[bool] = []

    def unlock() -> PgOp[None]:
        if raised:
            yield Execute("RESET maintenance_work_mem")
        yield Atomic(fetch_value("SELECT pg_advisory_unlock(%s)", [key]))

    body = _build(schema, stmts, options, namespace, owned_connection, raised)
    return (yield from with_cleanup(body, unlock()))


def _build(
    schema: str,
    stmts: VectorStatements,
    options: HnswOptions,
    namespace: str,
    owned_connection: bool,
    raised: list[bool],
) -> PgOp[bool]:
    from psycopg import sql

    s = sql.Identifier(schema)
    register = sql.SQL(
        "INSERT INTO {}.vector_graphs (namespace, index_name) VALUES (%s, %s) "
        "ON CONFLICT (namespace) DO NOTHING"
    ).format(s)
    yield Atomic(execute(register, [namespace, graph_name(namespace)]))
    name = yield Atomic(
        fetch_value(
            sql.SQL("SELECT index_name FROM {}.vector_graphs WHERE namespace = %s").format(s),
            [namespace],
        )
    )
    count = sql.SQL("SELECT count(*) FROM {}.entry_vectors WHERE namespace = %s").format(s)
    rows = int((yield Atomic(fetch_value(count, [namespace]))) or 0)
    shape = yield Atomic(
        fetch_row(sql.SQL(_SHAPE).format(lists=sql.SQL(IVFFLAT_LISTS)), [schema, name])
    )
    valid = None if shape is None else bool(shape[0])
    if valid and options.fits(str(shape[1]), shape[2], rows):
        return True
    target = sibling_name(name) if valid else name
    if valid is not None:  # an invalid index left by a build that died, or a leftover
        yield Execute(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(stmts.index_ident(target))
        )
    want_kb = build_memory_kb(rows, stmts.dim, stmts.kind == "hnsw_halfvec")
    have = yield Atomic(
        fetch_value(
            "SELECT setting::bigint FROM pg_catalog.pg_settings "
            "WHERE name = 'maintenance_work_mem'",
            None,
        )
    )
    if owned_connection and want_kb > int(have or 0):
        yield Execute("SELECT set_config('maintenance_work_mem', %s, false)", [f"{want_kb}kB"])
        raised.append(True)
    method = options.method_for(rows)
    started = time.monotonic()
    _log.info(
        "schema %r: building the graph of namespace %r (%s rows, %s)%s",
        schema,
        namespace,
        rows,
        method,
        f", beside its {shape[1]} index" if valid else "",
    )
    yield Execute(stmts.create_graph(options, namespace, concurrently=True, rows=rows, name=target))
    if target != name:  # switch the registry to it, then drop the old index
        switch = sql.SQL("UPDATE {}.vector_graphs SET index_name = %s WHERE namespace = %s").format(
            s
        )
        yield Atomic(execute(switch, [target, namespace]))
        yield Execute(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(stmts.index_ident(name))
        )
    _log.info(
        "schema %r: graph of namespace %r (%s) built in %.1f s",
        schema,
        namespace,
        method,
        time.monotonic() - started,
    )
    return True


# Whether an index is valid, its access method and lists; params [schema, index name].
_SHAPE = (
    "SELECT i.indisvalid, a.amname, {lists} FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid "
    "JOIN pg_catalog.pg_am a ON a.oid = c.relam "
    "WHERE c.relnamespace = %s::regnamespace AND c.relname = %s"
)


def drop_unregistered(schema: str, stmts: VectorStatements) -> PgOp[list[str]]:
    """Drop the namespace indexes no registry row names (left by a reshape that died
    between its build and its switch, or between its switch and its drop)."""
    from psycopg import sql

    query = sql.SQL(
        "SELECT c.relname FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_catalog.pg_class t ON t.oid = i.indrelid "
        "WHERE t.relnamespace = %s::regnamespace AND t.relname = 'entry_vectors' "
        "AND starts_with(c.relname, %s) "
        "AND c.relname NOT IN (SELECT index_name FROM {}.vector_graphs)"
    ).format(sql.Identifier(schema))
    names = [str(n) for (n,) in (yield Atomic(fetch_all(query, [schema, GRAPH_PREFIX])))]
    for name in names:
        yield Execute(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(stmts.index_ident(name))
        )
        _log.info("schema %r: dropped %s, an index no namespace uses", schema, name)
    return names


def build_missing(
    schema: str,
    stmts: VectorStatements,
    options: HnswOptions,
    *,
    owned_connection: bool,
    progress: ProgressFn | None = None,
) -> PgOp[list[str]]:
    """Build a graph for every namespace above the threshold that has no valid one, one
    at a time, largest first; then retire the legacy all-namespace index once no
    namespace needs it. Returns the namespaces whose graph was built here."""
    conn = yield GetConnection()
    if not conn.autocommit:
        raise ValueError(
            "building HNSW graphs needs an autocommit connection (CREATE INDEX "
            "CONCURRENTLY cannot run in a transaction): open the store with dsn= or an "
            "autocommit connection"
        )
    if (yield from builder_lock(schema, wait=True)):
        yield from with_cleanup(drop_unregistered(schema, stmts), release_builder_lock(schema))
    states = yield from graph_states(schema, options.exact_search_max_rows)
    todo = [
        g
        for g in states
        if (g.state != "ready" and g.rows > options.exact_search_max_rows)
        or (g.state == "ready" and not options.fits(str(g.method), g.lists, g.rows))
    ]
    total_rows = sum(g.rows for g in todo)
    built: list[str] = []
    done_rows = 0
    if progress is not None:
        progress(Progress("index", 0, total_rows))
    for graph in todo:
        if (
            yield from build_graph(
                schema, stmts, options, graph.namespace, owned_connection=owned_connection
            )
        ):
            built.append(graph.namespace)
        done_rows += graph.rows
        if progress is not None:
            progress(Progress("index", done_rows, total_rows))
        _log.info(
            "schema %r: graphs %d / %d (%d / %d rows)",
            schema,
            len(built),
            len(todo),
            done_rows,
            total_rows,
        )
    yield from retire_legacy_index(schema, options.exact_search_max_rows)
    return built


def retire_legacy_index(schema: str, threshold: int) -> PgOp[bool]:
    """Drop the all-namespace HNSW index of an earlier layout once every namespace
    above the threshold has its own graph; True when it was dropped."""
    from psycopg import sql

    if (yield Atomic(index_state(schema, LEGACY_INDEX_NAME))) is None:
        return False
    states = yield from graph_states(schema, threshold)
    if any(g.rows > threshold and g.state != "ready" for g in states):
        return False
    yield Execute(
        sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
            sql.Identifier(schema), sql.Identifier(LEGACY_INDEX_NAME)
        )
    )
    _log.info("schema %r: every large namespace has its own graph; legacy index dropped", schema)
    return True
