"""Postgres helpers of the suite: server settings, sizes, ANALYZE, and the store's own
search statement run by hand (EXPLAIN for planning time, the bare-SQL floor)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

SETTINGS = (
    "server_version",
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "max_parallel_maintenance_workers",
    "max_parallel_workers_per_gather",
    "effective_cache_size",
    "max_wal_size",
    "jit",
    "synchronous_commit",
)


def server_info(dsn: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        info: dict[str, Any] = {
            s: str(conn.execute(f"SHOW {s}").fetchone()[0])  # type: ignore[index]
            for s in SETTINGS
        }
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        info["pgvector"] = None if row is None else str(row[0])
    return info


def settle(dsn: str, wait_s: float = 300.0) -> float:
    """CHECKPOINT, then wait until no autovacuum worker runs (at most ``wait_s``):
    seconds waited."""
    import psycopg

    began = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        while time.perf_counter() - began < wait_s:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            ).fetchone()
            if row is None or row[0] == 0:
                break
            time.sleep(0.5)
    return time.perf_counter() - began


def wal_position(dsn: str) -> tuple[int, int | None]:
    """(bytes of WAL written since the cluster began, WAL segment files it has created):
    a load's share is the difference. A server that must create (and zero-fill) new
    segments for a load's WAL writes it about twice as slowly as one that reuses old
    ones. Segment counts come from ``pg_stat_io`` (PostgreSQL 18): None before."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        written = int(row[0]) if row else 0
        try:
            got = conn.execute(
                "SELECT sum(writes) FROM pg_stat_io WHERE object = 'wal' AND context = 'init'"
            ).fetchone()
        except psycopg.Error:
            return written, None
    return written, None if got is None or got[0] is None else int(got[0])


def maintenance_work_mem_mb(rows: int, dim: int) -> int:
    """HNSW build memory for a graph of ``rows``: about 4 bytes per dimension plus ~900
    bytes of graph per row (~2.4 kB/row at dim 384), with 25% headroom."""
    return max(64, int(rows * (4 * dim + 900) * 1.25 / 2**20))


def with_options(dsn: str, options: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    current = conninfo_to_dict(dsn).get("options") or ""
    return make_conninfo(dsn, options=f"{current} {options}".strip())


def pg_sizes(dsn: str, schema: str) -> dict[str, Any]:
    """Bytes of the schema's tables with their indexes, of all indexes, and of the
    indexes by access method (``hnsw`` and ``ivfflat``: the namespaces' vector indexes)."""
    import psycopg

    q = (
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0), "
        "coalesce(sum(pg_indexes_size(c.oid)), 0), "
        "coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname = 'entries'), 0) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r'"
    )
    by_am = (
        "SELECT am.amname, count(*), sum(pg_relation_size(c.oid)) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am am ON am.oid = c.relam "
        "WHERE n.nspname = %s AND c.relkind = 'i' GROUP BY am.amname ORDER BY 3 DESC"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        total, indexes, entries = conn.execute(q, [schema]).fetchone()  # type: ignore[misc]
        am_rows = conn.execute(by_am, [schema]).fetchall()
    return {
        "total_bytes": int(total),
        "index_bytes": int(indexes),
        "entries_total_bytes": int(entries),
        "indexes_by_method": {
            str(am): {"count": int(count), "bytes": int(size)} for am, count, size in am_rows
        },
    }


def analyze(dsn: str, schema: str) -> float:
    """VACUUM (ANALYZE) every table of the schema, as an operator would after a bulk
    load (the planner's choice between a graph and an exact scan depends on the
    statistics; autovacuum would otherwise do it later, during the next measurement);
    seconds."""
    import psycopg
    from psycopg import sql

    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])
        for (table,) in tables.fetchall():
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(schema, table)))
    return time.perf_counter() - started


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# -- the store's search statement, by hand ----------------------------------------


@dataclass(frozen=True)
class SearchSQL:
    """The search statement of an open pgvector ``PostgresStore`` and the session
    settings it runs under. ``source`` says whether the text is the store's own
    composed statement or a reconstruction (when the store's internals moved)."""

    schema: str
    statement: Any  # psycopg.sql.Composable with %(name)s placeholders
    settings: dict[str, str]
    source: str

    def params(
        self,
        store: Any,
        namespace: str,
        vector: npt.NDArray[np.float32],
        k: int,
        now: int,
        floor: float | None = None,
    ) -> dict[str, Any]:
        """The statement's parameters; ``floor``: the similarity below which a
        neighbour's entry is not read (the cache's threshold), where the store has it."""
        if self.source == "store":
            try:
                prepared = store._search_params(namespace, vector, k, now, floor)
            except TypeError:  # a store before min_similarity
                prepared = store._search_params(namespace, vector, k, now)
            return dict(prepared[1])
        return {"ns": namespace, "q": vector, "now": now, "k": k, "scan": max(k, 20)}

    def bound(self, store: Any, conn: Any, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The statement the store itself sends for ``params`` on ``conn``, and its
        values: for a namespace with a graph the namespace, limits and ef_search are
        written in (one prepared plan per namespace), else the shared exact scan."""
        try:
            from mneme.stores.postgres.vector import _WRITTEN_IN

            namespace, k = params["ns"], int(params["k"])
            if not store._graph_known(namespace):
                return store._vec.rendered("search_exact", conn), params
            ef = int(store._search_settings(namespace, k)[0])
            statement = store._vec.for_namespace("search", params, ef, conn)
            return statement, {key: v for key, v in params.items() if key not in _WRITTEN_IN}
        except (ImportError, AttributeError, KeyError, TypeError):
            return self.statement, params


def search_sql(store: Any, schema: str) -> SearchSQL:
    """Read the statement and settings from the store (private attributes: this is a
    benchmark of this very library); reconstruct them when that fails."""
    from psycopg import sql

    hnsw = getattr(store, "_hnsw", None)
    ef = str(getattr(hnsw, "ef_search", 100))
    settings = {"hnsw.ef_search": ef}
    if hasattr(hnsw, "ivfflat_probes"):
        settings["ivfflat.probes"] = str(hnsw.ivfflat_probes)
    if getattr(store, "_iterative", True):
        settings["hnsw.iterative_scan"] = "relaxed_order"
        settings["hnsw.max_scan_tuples"] = str(getattr(hnsw, "max_scan_tuples", 20_000))
        if hasattr(hnsw, "ivfflat_probes"):
            settings["ivfflat.iterative_scan"] = "relaxed_order"
    try:
        statement = store._vec.sql["search"]
        probe = np.ones(store._vec.dim, dtype=np.float32)
        SearchSQL(schema, statement, settings, "store").params(store, "probe", probe, 1, 0)
        return SearchSQL(schema, statement, settings, "store")
    except (AttributeError, KeyError, TypeError, IndexError):
        pass
    s = sql.Identifier(schema)
    statement = sql.SQL(
        "SELECT en.id, en.response, 1 - u.d FROM (SELECT id, embedding <=> %(q)b AS d "
        "FROM {s}.entry_vectors WHERE namespace = %(ns)s AND embedding IS NOT NULL "
        "AND (expires_at IS NULL OR expires_at > %(now)s) ORDER BY embedding <=> %(q)b "
        "LIMIT %(scan)s) u JOIN {s}.entries en ON en.id = u.id ORDER BY u.d, u.id LIMIT %(k)s"
    ).format(s=s)
    return SearchSQL(schema, statement, settings, "reconstructed")


@contextmanager
def search_connection(dsn: str, search: SearchSQL) -> Iterator[Any]:
    """An autocommit connection with the vector type and the search's session settings."""
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        for name, value in search.settings.items():
            conn.execute("SELECT set_config(%s, %s, false)", [name, value])
        yield conn


def explain(conn: Any, search: SearchSQL, params: dict[str, Any]) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, SUMMARY) of one search: planning and execution ms, and the
    index the plan walked (None: no index scan)."""
    from psycopg import sql

    query = sql.SQL("EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) {}").format(search.statement)
    (doc,) = conn.execute(query, params).fetchone()
    top = doc[0]
    indexes: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            indexes.append(str(node["Index Name"]))
        for child in node.get("Plans", []):
            walk(child)

    walk(top["Plan"])
    return {
        "planning_ms": float(top["Planning Time"]),
        "execution_ms": float(top["Execution Time"]),
        "indexes": indexes,
    }


def vector_index_names(dsn: str, schema: str) -> dict[str, str]:
    """The schema's vector indexes (HNSW and IVFFlat): name -> access method."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, am.amname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_am am ON am.oid = c.relam "
            "WHERE n.nspname = %s AND am.amname IN ('hnsw', 'ivfflat')",
            [schema],
        ).fetchall()
    return {str(name): str(method) for name, method in rows}
