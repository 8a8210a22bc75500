"""``doctor`` checks of a Postgres schema: server, pgvector, indexes, settings, storage
of the vector column, and dead-tuple bloat. Reads catalogs and statistics only."""

from __future__ import annotations

from typing import Any

from mneme.cli.findings import Finding
from mneme.cli.target import Meta, Target
from mneme.stores.postgres.graphs import GRAPH_PREFIX, build_memory_kb
from mneme.stores.postgres.operations import PgCore
from mneme.stores.postgres.schema import ROWS_INLINE, ROWS_INLINE_SET, ROWS_INLINE_SQL
from mneme.stores.postgres.vector import (
    ITERATIVE_SCANS_SINCE,
    LEGACY_INDEX_NAME,
    HnswOptions,
    parse_version,
)

# The store's default; a store opened with another exact_search_max_rows builds graphs
# for other namespaces, which doctor cannot know.
_THRESHOLD = HnswOptions().exact_search_max_rows

__all__ = ["check_postgres"]

# pgvector 0.8.4 fixed HNSW vacuum problems; 0.8.0 brought iterative scans.
_VACUUM_FIXES_SINCE = (0, 8, 4)
_BLOAT_MIN_DEAD = 1_000
_BLOAT_RATIO = 0.2


def check_postgres(target: Target) -> list[Finding]:
    with target.connect() as conn:
        return _Checks(target, conn).run()


class _Checks:
    def __init__(self, target: Target, conn: Any) -> None:
        self.t = target
        self.conn = conn
        self.schema = target.schema
        self.found: list[Finding] = []

    def add(self, level: Any, check: str, detail: str, fix: str | None = None) -> None:
        self.found.append(Finding(level, check, detail, fix))

    def one(self, query: Any, params: list[Any] | None = None) -> Any:
        return self.conn.execute(query, params).fetchone()

    def qualified(self, name: str) -> str:
        return f"{self.schema}.{name}"

    def run(self) -> list[Finding]:
        version = self.one("SHOW server_version")[0]
        self.add("ok", "server", f"PostgreSQL {version}, reachable")
        meta = self.t.read_meta(must_exist=False)
        if meta is None:
            self.add(
                "fail",
                "schema",
                f"schema {self.schema!r} holds no mneme cache",
                "check --schema, or create it by opening a store once (e.g. mneme import)",
            )
            return self.found
        self._schema(meta)
        ext = self._pgvector(meta)
        if meta.vector_index is not None:
            self._side_table(meta)
        self._indexes(meta)
        if meta.vector_index is not None or ext is not None:
            self._build_memory(meta)
        if meta.vector_index is not None:
            self._storage()
            self._side_row_storage()
            self._search_memory()
        self._entry_storage()
        self._bloat(meta)
        return self.found

    def _schema(self, meta: Meta) -> None:
        version = int(meta.schema_version or 0)
        if version < PgCore.schema_version:
            self.add(
                "warn",
                "schema",
                f"{self.schema!r} is at version {version}, this mneme writes "
                f"{PgCore.schema_version}",
                "open a store on it once with this mneme; the migration runs in one transaction",
            )
        else:
            self.add("ok", "schema", f"{self.schema!r} at version {version}")
        self.add("info", "embedder", f"{meta.fingerprint} (dim {meta.dim})")

    def _pgvector(self, meta: Meta) -> str | None:
        row = self.one(
            "SELECT (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'), "
            "(SELECT default_version FROM pg_catalog.pg_available_extensions "
            "WHERE name = 'vector')"
        )
        installed, available = row[0], row[1]
        uses = meta.vector_index is not None
        if installed is None:
            if uses:
                self.add(
                    "fail",
                    "pgvector",
                    "the schema has a pgvector side table but the extension is missing",
                    "install the pgvector package for this server, then CREATE EXTENSION vector",
                )
            elif available is None:
                self.add(
                    "info",
                    "pgvector",
                    "not available on this server: Layer 2 runs in process",
                    "to search in the database, install the pgvector package for this "
                    "PostgreSQL (e.g. postgresql-17-pgvector), then mneme upgrade --pgvector",
                )
            else:
                self.add(
                    "info",
                    "pgvector",
                    f"{available} available, not created in this database",
                    "mneme upgrade --pgvector creates it (as the database owner or a superuser)",
                )
            return available if isinstance(available, str) else None
        parsed = parse_version(installed)
        if parsed < ITERATIVE_SCANS_SINCE:
            self.add(
                "warn",
                "pgvector",
                f"{installed}: no iterative index scans, so small namespaces in a large "
                "table can lose recall",
                "ALTER EXTENSION vector UPDATE (after installing pgvector 0.8.4 or later)",
            )
        elif parsed < _VACUUM_FIXES_SINCE:
            self.add(
                "warn",
                "pgvector",
                f"{installed}: iterative scans available, but HNSW vacuum fixes need 0.8.4",
                "install pgvector 0.8.4 or later, then ALTER EXTENSION vector UPDATE",
            )
        else:
            self.add("ok", "pgvector", f"{installed} (iterative scans: on per search)")
        if available and parse_version(available) > parsed:
            self.add(
                "warn",
                "pgvector update",
                f"{available} is installed on the server, {installed} is in use",
                "ALTER EXTENSION vector UPDATE",
            )
        if not uses:
            self.add(
                "info",
                "layer 2",
                "this schema has no pgvector side table: each process searches in memory",
                f"mneme upgrade --pgvector {self._target_args()} moves the search into the "
                "database (online)",
            )
        return str(installed)

    def _side_table(self, meta: Meta) -> None:
        row = self.one(
            self._sql(
                "SELECT (SELECT count(*) FROM {schema}.entries), "
                "(SELECT count(*) FROM {schema}.entries e WHERE NOT EXISTS "
                "(SELECT 1 FROM {schema}.entry_vectors v WHERE v.id = e.id))"
            )
        )
        entries, missing = int(row[0]), int(row[1])
        if missing:
            self.add(
                "warn",
                "side table",
                f"{missing:,} of {entries:,} entries have no vector row (an upgrade stopped)",
                f"mneme upgrade --pgvector {self._target_args()}",
            )
        else:
            self.add("ok", "side table", f"all {entries:,} entries have their vector row")

    def _indexes(self, meta: Meta) -> None:
        rows = self.conn.execute(
            "SELECT c.relname, i.indisvalid FROM pg_catalog.pg_index i "
            "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s ORDER BY c.relname",
            [self.schema],
        ).fetchall()
        invalid = [r[0] for r in rows if not r[1]]
        for name in invalid:
            if name.startswith(GRAPH_PREFIX) or name == LEGACY_INDEX_NAME:
                fix = (
                    f"mneme reindex {self._target_args()} (drops it and builds it again "
                    "without blocking writers)"
                )
            elif "_ccnew" in name or "_ccold" in name:
                fix = f"DROP INDEX CONCURRENTLY {self.qualified(name)} (left by a stopped REINDEX)"
            else:
                fix = f"REINDEX INDEX CONCURRENTLY {self.qualified(name)}"
            self.add("fail", "index", f"{self.qualified(name)} is invalid", fix)
        if not invalid:
            self.add("ok", "indexes", f"{len(rows)} indexes, all valid (pg_index.indisvalid)")
        if meta.vector_index is None:
            return
        names = {r[0] for r in rows}
        if LEGACY_INDEX_NAME in names:
            self.add(
                "info",
                "graphs",
                f"{self.qualified(LEGACY_INDEX_NAME)} is one HNSW index over every namespace "
                "(an earlier layout); it is dropped once every large namespace has its own",
                f"mneme reindex {self._target_args()}",
            )
        pending = self.conn.execute(
            self._sql(
                "SELECT n.namespace, n.rows FROM (SELECT namespace, count(*) AS rows "
                "FROM {schema}.entry_vectors GROUP BY namespace HAVING count(*) > %s) n "
                "WHERE NOT EXISTS (SELECT 1 FROM {schema}.vector_graphs g "
                "JOIN pg_catalog.pg_class c ON c.relname = g.index_name "
                "JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid "
                "WHERE g.namespace = n.namespace AND i.indisvalid) ORDER BY n.rows DESC"
            ),
            [_THRESHOLD],
        ).fetchall()
        if pending:
            largest = ", ".join(f"{ns!r} ({count:,} rows)" for ns, count in pending[:3])
            self.add(
                "warn",
                "graphs",
                f"{len(pending)} namespace(s) above {_THRESHOLD:,} rows have no vector index of "
                f"their own and are searched exactly (slower), e.g. {largest}",
                f"mneme reindex {self._target_args()} (or leave it to stores opened from a "
                "DSN, which build them in the background)",
            )
        else:
            self.add("ok", "graphs", f"every namespace above {_THRESHOLD:,} rows has its graph")

    def _build_memory(self, meta: Meta) -> None:
        have_kb = int(
            self.one(
                "SELECT setting::bigint FROM pg_catalog.pg_settings "
                "WHERE name = 'maintenance_work_mem'"
            )[0]
        )
        # One graph per namespace: the largest namespace is the largest build.
        rows = int(
            self.one(
                self._sql(
                    "SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c "
                    "FROM {schema}.entries GROUP BY namespace) t"
                )
            )[0]
        )
        want_kb = build_memory_kb(rows, meta.dim or 0, meta.vector_index == "hnsw_halfvec")
        if have_kb >= want_kb or rows == 0:
            self.add(
                "ok",
                "maintenance_work_mem",
                f"{_mb(have_kb)}: enough to build the largest namespace's HNSW graph "
                f"({rows:,} entries) in memory",
            )
            return
        level = "warn" if meta.vector_index is not None else "info"
        self.add(
            level,
            "maintenance_work_mem",
            f"{_mb(have_kb)}; the largest namespace's HNSW build ({rows:,} entries) wants about "
            f"{_mb(want_kb)}, "
            "else it spills to disk and takes many times longer (mneme upgrade raises it for "
            "its own build; a REINDEX does not)",
            f"ALTER ROLE CURRENT_USER SET maintenance_work_mem = '{_mb(want_kb)}' "
            "(or ALTER SYSTEM SET ... and SELECT pg_reload_conf())",
        )

    def _search_memory(self) -> None:
        row = self.one(
            "SELECT pg_size_bytes(current_setting('shared_buffers')), "
            "(SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0) "
            "FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = t.oid AND starts_with(c.relname, %s)), pg_table_size(t.oid) "
            "FROM pg_catalog.pg_class t "
            "JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
            "WHERE n.nspname = %s AND t.relname = 'entry_vectors'",
            [GRAPH_PREFIX, self.schema],
        )
        if row is None:  # no side table: reported by the side-table check
            return
        level, detail, fix = search_memory(*(int(size) for size in row))
        self.add(level, "shared_buffers", detail, fix)

    def _storage(self) -> None:
        row = self.one(
            "SELECT a.attstorage FROM pg_catalog.pg_attribute a "
            "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = 'entry_vectors' AND a.attname = 'embedding'",
            [self.schema],
        )
        storage = None if row is None else str(row[0])
        if storage == "m":
            self.add("ok", "vector storage", "entry_vectors.embedding is STORAGE MAIN (inline)")
            return
        self.add(
            "warn",
            "vector storage",
            f"entry_vectors.embedding has attstorage {storage!r}, not 'm' (MAIN): large "
            "vectors may be moved out of line (TOAST), making every exact scan slower",
            f"ALTER TABLE {self.qualified('entry_vectors')} ALTER COLUMN embedding SET "
            "STORAGE MAIN (rows written before keep theirs until rewritten, e.g. "
            "VACUUM FULL)",
        )

    def _entry_storage(self) -> None:
        self._rows_inline(
            "entries",
            "entry storage",
            "a typical entry's embedding goes out of line, which about doubles the cost "
            "of writing it",
        )

    def _side_row_storage(self) -> None:
        self._rows_inline(
            "entry_vectors",
            "side row storage",
            "each row written pays a compression attempt on its vector that cannot "
            "succeed (most of a large vector's write cost on the server)",
        )

    def _rows_inline(self, table: str, check: str, cost: str) -> None:
        row = self.one(ROWS_INLINE_SQL, [ROWS_INLINE, self.schema, [table]])
        if row is not None and row[1]:
            self.add("ok", check, f"{table} keeps rows in line ({ROWS_INLINE})")
            return
        self.add(
            "info",
            check,
            f"{table} has the default TOAST target (2 kB): {cost}",
            "open a store on the schema once as the table's owner, or ALTER TABLE "
            f"{self.qualified(table)} SET ({ROWS_INLINE_SET})",
        )

    def _bloat(self, meta: Meta) -> None:
        rows = self.conn.execute(
            "SELECT relname, n_live_tup, n_dead_tup FROM pg_catalog.pg_stat_user_tables "
            "WHERE schemaname = %s AND relname IN ('entries', 'entry_vectors') "
            "ORDER BY relname",
            [self.schema],
        ).fetchall()
        bloated = False
        for name, live, dead in rows:
            live, dead = int(live), int(dead)
            if dead < _BLOAT_MIN_DEAD or dead < _BLOAT_RATIO * max(live, 1):
                continue
            bloated = True
            table = self.qualified(name)
            fix = f"VACUUM (ANALYZE) {table}"
            if name == "entry_vectors":
                fix = (
                    f"mneme reindex {self._target_args()}, then VACUUM (ANALYZE) {table} "
                    "(vacuuming an HNSW graph full of dead rows is slow; rebuilding first "
                    "is cheaper)"
                )
            self.add("warn", "bloat", f"{table}: {dead:,} dead rows beside {live:,} live ones", fix)
        if not bloated:
            detail = ", ".join(f"{name} {int(dead):,} dead" for name, _, dead in rows)
            self.add("ok", "bloat", detail or "no statistics yet")

    def _sql(self, text: str) -> Any:
        from psycopg import sql

        return sql.SQL(text).format(schema=sql.Identifier(self.schema))

    def _target_args(self) -> str:
        return f"TARGET --schema {self.schema}"


def search_memory(shared_buffers: int, graphs: int, side_table: int) -> tuple[str, str, str | None]:
    """(level, detail, fix) of the search's memory check, sizes in bytes. A walk reads its
    graph's pages and a few side-table pages at random: from shared buffers when they
    fit, else many from the kernel's page cache (at 1M rows, 3.9 GB of both: a get took
    3.14 ms p50 with 4GB of shared_buffers, 1.94 ms with 8GB)."""
    have, need = _mb(shared_buffers // 1024), _mb((graphs + side_table) // 1024)
    sizes = f"graphs {_mb(graphs // 1024)} + side table {_mb(side_table // 1024)}"
    if shared_buffers >= graphs + side_table:
        return "ok", f"{have}: holds the HNSW graphs and the side table ({sizes})", None
    return (
        "warn",
        f"{have}, smaller than the HNSW graphs and the side table ({sizes} = {need}): "
        "searches read part of them from the kernel's page cache, which is slower",
        f"ALTER SYSTEM SET shared_buffers = '{need}' or more, then restart the server (it is "
        "shared by every database on it)",
    )


def _mb(kb: int) -> str:
    return f"{max(1, round(kb / 1024))}MB"
