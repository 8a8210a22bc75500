"""pgvector acceleration for PostgresStore: options, the side table's SQL, and search.

The vectors live in ``{schema}.entry_vectors`` (id, namespace, expires_at, embedding),
one row per entry, written in the same statement as the entry and deleted with it by
the foreign key. Each namespace above ``exact_search_max_rows`` rows has an HNSW graph
of its own, a partial index ``WHERE namespace = '<ns>'`` (see ``graphs``); smaller
namespaces are scanned exactly through the btree on ``namespace``. One search statement
serves both: with the namespace bound and a custom plan, the planner takes the
namespace's graph when it has one and the exact scan otherwise. A graph answers an
unfiltered nearest-neighbour walk, so a tenant's recall does not depend on how many
other tenants share the table.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from mneme._errors import StoreBackendError
from mneme.stores.postgres.requests import Execute, GetConnection, PgOp, Pipelined, Prepared
from mneme.stores.postgres.statements import (
    COLUMNS,
    STAGE_COLUMNS,
    STAGE_COLUMNS_DDL,
    compose,
    stage_statements,
)

if TYPE_CHECKING:
    from psycopg.sql import Composable, Composed

__all__ = [
    "HALFVEC_DIM_LIMIT",
    "GRAPH_PREFIX",
    "IVFFLAT_LISTS",
    "LEGACY_INDEX_NAME",
    "META_LAYOUT",
    "META_DIM",
    "META_INDEX",
    "VECTOR_DIM_LIMIT",
    "WELL_BUILT",
    "HnswOptions",
    "VectorStatements",
    "check_dim",
    "graph_name",
    "index_state",
    "run_search",
    "index_kind",
    "parse_version",
    "side_vector",
    "side_vectors",
    "sql_file",
]

VECTOR_DIM_LIMIT = 2_000
HALFVEC_DIM_LIMIT = 4_000
ITERATIVE_SCANS_SINCE = (0, 8, 0)
LEGACY_INDEX_NAME = "idx_entry_vectors_hnsw"
"""One HNSW index over every namespace, as schemas of earlier versions have it."""
GRAPH_PREFIX = "idx_ev_hnsw_"
META_LAYOUT = "vector_layout"
META_DIM = "vector_dim"
META_INDEX = "vector_index"


# Search statements kept with their namespace written in, at most.
_NAMESPACE_STATEMENTS = 4096
# The search parameters written into a prepared search statement.
_WRITTEN_IN = frozenset({"ns", "k", "scan", "gate"})
_EF_GATE = b"(SELECT set_config('hnsw.ef_search', '%d', false)) IS NOT NULL"
# pgvector's bounds of hnsw.ef_search and ivfflat.probes.
EF_SEARCH_MAX = 1_000
IVFFLAT_PROBES_MAX = 32_768
# ef_search is the setting for graphs of this many rows (HnswOptions.ef_for).
EF_SEARCH_ROWS = 100_000
# Graphs built with at least this ef_construction; those built with less (the default of
# earlier versions) need a wider search for the same recall.
WELL_BUILT = 128
_EF_ROWS_LESS_BUILT = 20_000
_EF_SCALE_MIN = 0.1
# An IVFFlat index is rebuilt with more lists once its namespace holds this many times
# the rows its lists were sized for (lists grow as the square root of the rows).
IVFFLAT_REGROW = 4
# An index's lists, from the reloptions of its pg_class row "c" (NULL for HNSW).
IVFFLAT_LISTS = (
    "(SELECT split_part(o, '=', 2)::int FROM unnest(c.reloptions) o WHERE o LIKE 'lists=%%')"
)


@dataclass(frozen=True, slots=True)
class HnswOptions:
    """Build and search settings of the HNSW path (constructor options)."""

    m: int = 16
    ef_construction: int = WELL_BUILT
    ef_search: int = 100
    max_scan_tuples: int = 20_000
    # Once single puts have interleaved tenants, a namespace's rows lie one per heap
    # page: an exact scan costs ~0.13 ms + 0.45 us a row, a walk ~0.2 ms, so a graph
    # answers faster from about 150 rows (350-910 rows: 0.28-0.53 ms exact, 0.20-0.27
    # ms walked).
    exact_search_max_rows: int = 250
    # Up to this many rows a namespace's index is IVFFlat, searched through
    # ``ivfflat_probes`` lists; above it, an HNSW graph. An IVFFlat search reads its
    # probed lists' vectors page by page, about 0.3 us a row; a walk loads each
    # element it visits through the buffer manager, about 1 us, and visits ~300 of
    # them even in a graph of a few thousand rows.
    ivfflat_max_rows: int = 50_000
    ivfflat_probes: int = 6

    def method_for(self, rows: int) -> str:
        """The index a namespace of ``rows`` rows gets: 'ivfflat' or 'hnsw'."""
        return "ivfflat" if rows <= self.ivfflat_max_rows else "hnsw"

    @staticmethod
    def lists_for(rows: int) -> int:
        """IVFFlat lists for ``rows`` rows: the square root, so that a search reads
        ``ivfflat_probes`` x sqrt(rows) rows."""
        return max(1, round(math.sqrt(max(rows, 1))))

    def ivfflat_bound(self, lists: int | None) -> int:
        """The most rows an IVFFlat index of ``lists`` lists serves before it is rebuilt."""
        return min(self.ivfflat_max_rows, IVFFLAT_REGROW * max(1, lists or 1) ** 2)

    def fits(self, method: str, lists: int | None, rows: int) -> bool:
        """Whether an index of ``method`` (with ``lists``) still suits ``rows`` rows. An
        HNSW graph always does: it grows by itself, and a namespace that shrank keeps
        it. An IVFFlat index does until its namespace outgrows its lists, or IVFFlat."""
        return method != "ivfflat" or rows <= self.ivfflat_bound(lists)

    def ef_for(
        self, graph_rows: float, ef_construction: int = WELL_BUILT, at_least: int = 1
    ) -> int:
        """The hnsw.ef_search of a search for ``at_least`` rows in a graph of
        ``graph_rows`` rows, built with ``ef_construction``. Never below ``at_least``: a
        walk that finds fewer than the rows asked for goes on in a second pass
        (iterative scans), or returns fewer (pgvector before 0.8).

        ``ef_search`` is the setting for a graph of ``EF_SEARCH_ROWS`` rows; another
        graph searches with ef_search x sqrt(n / EF_SEARCH_ROWS), from 0.1 x ef_search
        up to 1,000. Recall at a fixed setting falls as a graph grows, and a walk costs
        in proportion to the setting. Measured at dim 384 with m 16 and
        ef_construction 128, recall@1 of paraphrases: 179k rows (one tenant of 1,000)
        0.982 at 85, 0.985 at 110, 0.989 at 136, 0.994 at 169 (866 questions); 84k rows
        0.995 at 58 and 1.000 at 75; 54k rows 1.000 at 46; 261k rows (one of 50) 0.983
        at 56, 0.997 at 84-100; 122k rows 0.990 at 56, 0.997 at 70; 56k rows 0.990 at
        32-40; 26k rows 0.999 at 32; 12k rows 1.000 at 20; 3.6k-5.7k rows 1.000 at 14
        and 0.998-1.000 at 10; 350-2.4k rows 1.000 at 10, where 20 cost 0.03-0.1 ms
        more. A graph built with less than ``WELL_BUILT`` (64, the default of earlier
        versions) searches as if it were five times larger: 261k rows built with 64
        had 0.963 at 100 and 0.993 at 240."""
        ef = self.ef_search
        if graph_rows > 0:  # else not known (yet): as given
            reference = EF_SEARCH_ROWS if ef_construction >= WELL_BUILT else _EF_ROWS_LESS_BUILT
            ef = round(ef * max(_EF_SCALE_MIN, math.sqrt(graph_rows / reference)))
        return max(1, min(EF_SEARCH_MAX, max(at_least, ef)))

    def __post_init__(self) -> None:
        # pgvector's own bounds, checked here so a typo fails at construction.
        bounds = {
            "hnsw_m": (self.m, 2, 100),
            "hnsw_ef_construction": (self.ef_construction, 4, 1000),
            "ef_search": (self.ef_search, 1, EF_SEARCH_MAX),
            "max_scan_tuples": (self.max_scan_tuples, 1, 2**31 - 1),
            "exact_search_max_rows": (self.exact_search_max_rows, 0, 2**31 - 2),
            "ivfflat_max_rows": (self.ivfflat_max_rows, 0, 2**31 - 2),
            "ivfflat_probes": (self.ivfflat_probes, 1, IVFFLAT_PROBES_MAX),
        }
        for name, (value, low, high) in bounds.items():
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")
        if self.ef_construction < 2 * self.m:
            raise ValueError(
                f"hnsw_ef_construction ({self.ef_construction}) must be at least twice "
                f"hnsw_m ({self.m})"
            )


def check_dim(dim: int) -> None:
    """Refuse dimensions pgvector's HNSW index cannot hold."""
    if not 1 <= dim <= HALFVEC_DIM_LIMIT:
        raise StoreBackendError(
            f"PostgresStore(use_pgvector=True) cannot index {dim}-dimensional embeddings: "
            f"pgvector's HNSW index holds at most {VECTOR_DIM_LIMIT:,} dimensions as vector "
            f"and {HALFVEC_DIM_LIMIT:,} as halfvec; use use_pgvector=False (the cache then "
            "searches in process) or an embedder with fewer dimensions"
        )


def index_kind(dim: int) -> str:
    """The graphs of a new side table: 'hnsw_halfvec', an index on the vectors in half
    precision, at every dimension up to 4,000. A schema keeps the kind it was created
    with (``META_INDEX``): side tables of earlier versions, 'hnsw', index the full
    vectors (up to 2,000 dimensions) and are searched as they are."""
    check_dim(dim)
    return "hnsw_halfvec"


def parse_version(text: str) -> tuple[int, ...]:
    """'0.8.1' -> (0, 8, 1); unparsable parts count as 0."""
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def sql_file(name: str) -> str:
    return (
        resources.files("mneme.stores.postgres")
        .joinpath("sql", "pgvector", name)
        .read_text("utf-8")
    )


# A float32 vector normalised in float64 has a squared norm within a few 1e-7 of 1.
_UNIT_SLACK = 1e-5


def side_vector(embedding: bytes, dim: int) -> npt.NDArray[np.float32] | None:
    """The side-table value of a stored embedding: unit length, or None when the
    embedding has another size, is zero, or is not finite (cosine is undefined)."""
    return side_vectors([embedding], dim)[0]


def side_vectors(embeddings: Sequence[bytes], dim: int) -> list[npt.NDArray[np.float32] | None]:
    """``side_vector`` for a batch, in one NumPy pass over the embeddings of the right
    size. Embeddings the cache wrote are unit vectors already: those are taken as they
    are, without a second normalisation in float64 (a fifth of a batch load's client
    time at dim 1536)."""
    out: list[npt.NDArray[np.float32] | None] = [None] * len(embeddings)
    sized = [i for i, e in enumerate(embeddings) if len(e) == 4 * dim]
    if not sized:
        return out
    stored = np.frombuffer(b"".join(embeddings[i] for i in sized), dtype="<f4").reshape(-1, dim)
    # inf or nan if any value is, or the sum overflows (einsum raises no warning for it).
    squares = np.einsum("ij,ij->i", stored, stored)
    if np.all(np.abs(squares - 1.0) <= _UNIT_SLACK):
        unit, good = stored.astype(np.float32, copy=False), np.ones(len(sized), dtype=bool)
    else:
        raw = stored.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            norms = np.linalg.norm(raw, axis=1)
            unit = (raw / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)
        good = np.isfinite(norms) & (norms > 0) & np.isfinite(raw).all(axis=1) & unit.any(axis=1)
    for i, row, ok in zip(sized, unit, good, strict=True):
        if ok:
            out[i] = row
    return out


_SIDE_STATEMENTS = {
    # Batches write their side rows namespace by namespace (ORDER BY e.namespace): an
    # exact scan of a small namespace then reads a few heap pages, not one per row.
    # The last parameter says whether the row is fresh: kept out of the namespace's
    # graph until the background pass moves it in (see "flush_fresh").
    "insert": "WITH {bump}, e AS ({entry_insert} RETURNING id, namespace, created_at, ttl) "
    "INSERT INTO {schema}.entry_vectors (id, namespace, expires_at, embedding, fresh) "
    "SELECT id, namespace, created_at + ttl, %b::vector, %s FROM e {side_upsert} RETURNING id",
    "insert_many": "WITH {bump}, {batch_rows}, "
    "e AS ({batch_insert} RETURNING namespace, query_hash, id, created_at, ttl), "
    "v AS (INSERT INTO {schema}.entry_vectors (id, namespace, expires_at, embedding) "
    "SELECT e.id, e.namespace, e.created_at + e.ttl, r.vec FROM e "
    "JOIN rows r USING (namespace, query_hash) ORDER BY e.namespace, e.id {side_upsert}) "
    "SELECT namespace, query_hash, id FROM e",
    # The bulk path where COPY cannot go straight in (keys already stored): staging
    # table with the vectors, then per chunk one statement as above.
    **stage_statements(
        "mneme_stage_v",
        STAGE_COLUMNS_DDL + ", vec vector, ord BIGINT",
        STAGE_COLUMNS + ", vec, ord",
    ),
    # The vectors are joined from the staging table itself: "rows" is read once, so it
    # is not materialised (a copy of every staged row, sorted again for the join).
    "insert_staged": "WITH {bump}, rows AS (SELECT * FROM pg_temp.mneme_stage_v), "
    "e AS ({batch_insert} RETURNING namespace, query_hash, id, created_at, ttl), "
    "v AS (INSERT INTO {schema}.entry_vectors (id, namespace, expires_at, embedding) "
    "SELECT e.id, e.namespace, e.created_at + e.ttl, r.vec FROM e "
    "JOIN pg_temp.mneme_stage_v r USING (namespace, query_hash) ORDER BY e.namespace, e.id "
    "{side_upsert}) "
    "SELECT namespace, query_hash, id FROM e",
    # The direct load: ids for the rows to come, then COPY into both tables.
    "load_ids": "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
    "load_entries": "COPY {schema}.entries ({columns}) FROM STDIN (FORMAT BINARY)",
    "load_sides": "COPY {schema}.entry_vectors (id, namespace, expires_at, embedding) "
    "FROM STDIN (FORMAT BINARY)",
    # Side rows computed in Python (upgrade, catch-up); only for entries that still
    # exist, since the foreign key would refuse the whole batch.
    "side_upsert": "INSERT INTO {schema}.entry_vectors (id, namespace, expires_at, embedding) "
    "SELECT u.id, u.namespace, u.expires_at, u.embedding "
    "FROM unnest(%s::bigint[], %s::text[], %s::bigint[], %b::vector[]) "
    "AS u(id, namespace, expires_at, embedding) JOIN {schema}.entries e ON e.id = u.id "
    "ORDER BY u.namespace, u.id "
    "{side_upsert}",
    "missing": "SELECT e.id, e.namespace, e.created_at, e.ttl, e.embedding "
    "FROM {schema}.entries e WHERE e.id > %s AND NOT EXISTS "
    "(SELECT 1 FROM {schema}.entry_vectors v WHERE v.id = e.id) ORDER BY e.id LIMIT %s",
    "count_entries": "SELECT count(*) FROM {schema}.entries",
    "count_side": "SELECT count(*) FROM {schema}.entry_vectors",
    "analyze": "ANALYZE {schema}.entry_vectors",
    # The namespace's own graph (partial index) or an exact scan, chosen by the planner
    # on a custom plan. A graph of half-precision vectors is walked in the order of its
    # own (approximate) distance, but every row's distance "d", by which the candidates
    # are ranked and their similarity reported, is the exact one of the stored vector.
    # A walk's first pass is in its own order (ef_search is never below k), but a
    # relaxed-order iterative scan that goes on past it is not: MATERIALIZED and
    # "d + 0" keep the planner from trusting that order, and the sort restores it.
    # Only the best k are joined with their entries (the side row and its entry are
    # deleted together), and of those only the ones at or above %(floor)s, the
    # similarity a caller can use: the others come with NULL entry columns, so their
    # entries are neither read nor sent (see "entry_above").
    # %(gate)s is true, or in a statement prepared for one namespace on the store's own
    # connection a one-time filter that sets that graph's hnsw.ef_search: it runs before
    # the walk starts, which reads the setting at its first row.
    # Fresh rows are not in the graph yet: read exactly, beside the walk ("+ 0" keeps
    # the planner from answering that part with an index that still holds them, the
    # all-namespace index of earlier versions).
    # Both layers in one statement: the exact row (tagged 0), then the search (1). The
    # search is gated by a one-time filter: when the exact row is live it never runs,
    # so an exact hit costs no graph walk.
    "lookup": "WITH x AS MATERIALIZED (SELECT {entry_columns} FROM {schema}.entries en "
    "WHERE en.namespace = %(ns)s AND en.query_hash = %(h)s), "
    "u AS MATERIALIZED (({walk} AND NOT EXISTS (SELECT 1 FROM x WHERE x.ttl IS NULL "
    "OR x.created_at + x.ttl > %(now)s) AND %(gate)s ORDER BY {approx} LIMIT %(scan)s) "
    "UNION ALL ({fresh} AND NOT EXISTS (SELECT 1 FROM x WHERE x.ttl IS NULL "
    "OR x.created_at + x.ttl > %(now)s) ORDER BY ({exact}) + 0 LIMIT %(scan)s)), "
    "b AS (SELECT id, d FROM u ORDER BY d + 0, id LIMIT %(k)s) "
    "SELECT 0, x.*, NULL::float8 FROM x "
    "UNION ALL (SELECT 1, {entry_columns}, 1 - b.d FROM b {entry_above} ORDER BY b.d, b.id)",
    "search": "WITH u AS MATERIALIZED (({walk} AND %(gate)s ORDER BY {approx} LIMIT %(scan)s) "
    "UNION ALL ({fresh} ORDER BY ({exact}) + 0 LIMIT %(scan)s)), "
    "b AS (SELECT id, d FROM u ORDER BY d + 0, id LIMIT %(k)s) "
    "SELECT {entry_columns}, 1 - b.d FROM b {entry_above} ORDER BY b.d, b.id",
    # The background pass: a batch of fresh rows moved into their graphs (a row that
    # changes a graph's predicate is a graph insertion). Rows another pass or a writer
    # holds are skipped; they are moved next time.
    "flush_fresh": "UPDATE {schema}.entry_vectors SET fresh = false WHERE id IN ("
    "SELECT id FROM {schema}.entry_vectors WHERE fresh LIMIT %s FOR UPDATE SKIP LOCKED)",
    "any_fresh": "SELECT EXISTS (SELECT 1 FROM {schema}.entry_vectors WHERE fresh)",
    # Rows of each namespace's valid graph (its index's reltuples, set by the build and
    # by VACUUM/ANALYZE) and its ef_construction (pgvector's default, 64, when the
    # index does not say), for the search's ef_search; an IVFFlat index's lists.
    "graph_sizes": "SELECT g.namespace, c.reltuples, coalesce((SELECT split_part(o, '=', 2) "
    "FROM unnest(c.reloptions) o WHERE o LIKE 'ef\\_construction=%%'), '64')::int, {lists} "
    "FROM {schema}.vector_graphs g "
    "JOIN pg_catalog.pg_class c ON c.relname = g.index_name "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace AND n.nspname = %s "
    "JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid AND i.indisvalid",
    # Before pgvector 0.8.0 there are no iterative scans and no hnsw.max_scan_tuples.
    # The last argument says whether the settings end with the transaction (a borrowed
    # connection) or last the session (a connection the store owns): only hnsw.*
    # settings, which nothing but vector index scans reads.
    # On connections the store owns, whose statements are all its own: prepared search
    # statements name their namespace, so a generic plan is the right plan.
    "generic_plans": "SELECT set_config('plan_cache_mode', 'force_generic_plan', false)",
    # ivfflat.probes: one setting for every IVFFlat index (ivfflat_probes).
    "settings": "SELECT set_config('hnsw.ef_search', %s, %s), set_config('ivfflat.probes', %s, %s)",
    "settings_iterative": "SELECT set_config('hnsw.ef_search', %s, %s), "
    "set_config('ivfflat.probes', %s, %s), "
    "set_config('hnsw.iterative_scan', 'relaxed_order', %s), "
    "set_config('hnsw.max_scan_tuples', %s, %s), "
    "set_config('ivfflat.iterative_scan', 'relaxed_order', %s)",
}

# The same two statements for a namespace without a graph: its rows read exactly ("+ 0":
# no index order can answer the walk part, so a generic plan never walks a graph of
# another namespace). The namespace is a parameter, so one prepared statement and one
# plan serve every such namespace on a connection, instead of one each: with more small
# tenants than a connection keeps statements, every search was planned anew.
# The upgrade's backfill: the same rows, but a row already there (written meanwhile by
# a store that keeps the side table) is left as it is.
_SIDE_STATEMENTS["side_fill"] = _SIDE_STATEMENTS["side_upsert"].replace(
    "{side_upsert}", "ON CONFLICT (id) DO NOTHING"
)

for _name in ("search", "lookup"):
    _SIDE_STATEMENTS[f"{_name}_exact"] = _SIDE_STATEMENTS[_name].replace(
        "AND %(gate)s ORDER BY {approx} LIMIT", "AND %(gate)s ORDER BY ({exact}) + 0 LIMIT"
    )
    assert _SIDE_STATEMENTS[f"{_name}_exact"] != _SIDE_STATEMENTS[_name]


class VectorStatements:
    """The side-table statements for one schema and dimension, composed once."""

    def __init__(self, schema: str, dim: int, kind: str) -> None:
        from psycopg import sql

        self.dim = dim
        self.kind = kind
        self._ident = sql.Identifier(schema)
        halfvec = sql.SQL("halfvec({})").format(sql.Literal(dim))
        exact: Composable = sql.SQL("embedding <=> %(q)b")
        if kind == "hnsw":
            approx: Composable = exact
            self._indexed: Composable = sql.SQL("embedding vector_cosine_ops")
        else:
            # The same expression as the index, so the planner can use it.
            approx = sql.SQL("embedding::{h} <=> %(q)b::{h}").format(h=halfvec)
            self._indexed = sql.SQL("(embedding::{h}) halfvec_cosine_ops").format(h=halfvec)
        extra: dict[str, Composable] = {
            "batch_extra_type": sql.SQL(", %b::vector[]"),
            "batch_extra_col": sql.SQL(", vec"),
            # A row whose vector does not change keeps its place (in the graph or
            # fresh): the update then touches no index and can stay HOT.
            "side_upsert": sql.SQL(
                "ON CONFLICT (id) DO UPDATE SET namespace = EXCLUDED.namespace, "
                "expires_at = EXCLUDED.expires_at, embedding = EXCLUDED.embedding, "
                "fresh = CASE WHEN {t}.embedding IS NOT DISTINCT FROM EXCLUDED.embedding "
                "AND {t}.namespace = EXCLUDED.namespace THEN {t}.fresh ELSE EXCLUDED.fresh END"
            ).format(t=sql.Identifier("entry_vectors")),
            # The live rows of the namespace in its graph, and those beside it.
            **{
                part: sql.SQL(
                    "SELECT id, {exact} AS d FROM {schema}.entry_vectors "
                    "WHERE namespace = %(ns)s AND {which} AND embedding IS NOT NULL "
                    "AND (expires_at IS NULL OR expires_at > %(now)s)"
                ).format(exact=exact, schema=self._ident, which=sql.SQL(which))
                for part, which in (("walk", "NOT fresh"), ("fresh", "fresh"))
            },
            "approx": approx,
            "exact": exact,
            # OFFSET 0 keeps the subquery apart, so the similarity test is a one-time
            # filter on its scan: a row below the floor costs no index or heap read.
            "entry_above": sql.SQL(
                "LEFT JOIN LATERAL (SELECT * FROM {schema}.entries en WHERE en.id = b.id "
                "AND 1 - b.d >= %(floor)s OFFSET 0) en ON true"
            ).format(schema=self._ident),
            "lists": sql.SQL(IVFFLAT_LISTS),
            "entry_columns": sql.SQL(", ").join(
                sql.SQL("en.{}").format(sql.Identifier(c.strip())) for c in COLUMNS.split(",")
            ),
        }
        # Vectors always go as binary (%b): the text form costs ~40x more to build.
        self.sql = {name: compose(text, schema, **extra) for name, text in _SIDE_STATEMENTS.items()}
        self.table = compose(sql_file("entry_vectors.sql"), schema, dim=sql.Literal(dim))
        self._rendered: dict[tuple[str, str], bytes] = {}
        self._by_namespace: dict[tuple[str, str, int, int, int, str], bytes] = {}

    def for_namespace(self, name: str, params: dict[str, Any], ef: int, conn: Any) -> bytes:
        """Statement ``name`` with its namespace and its limits (``k``, ``scan``) written
        in as literals, as bytes (kept for the most recent namespaces): everything a
        plan depends on, so that one generic plan per namespace is the right plan."""
        from psycopg import sql

        namespace, k, scan = params["ns"], int(params["k"]), int(params["scan"])
        key = (name, namespace, k, scan, ef, conn.info.encoding)
        query = self._by_namespace.get(key)
        if query is None:
            # A % in the literal would read as a placeholder: doubled, it stays a %.
            literal = sql.Literal(namespace).as_bytes(conn).replace(b"%", b"%%")
            query = (
                self.rendered(name, conn)
                .replace(b"%(ns)s", literal)
                .replace(b"%(k)s", str(k).encode())
                .replace(b"%(scan)s", str(scan).encode())
                .replace(b"%(gate)s", _EF_GATE % int(ef))
            )
            if len(self._by_namespace) >= _NAMESPACE_STATEMENTS:
                self._by_namespace.clear()
            self._by_namespace[key] = query
        return query

    def rendered(self, name: str, conn: Any) -> bytes:
        """Statement ``name`` as bytes in ``conn``'s encoding, kept: the Layer-2 reads
        run on every get, and composing the statement each time cost more than
        sending it."""
        key = (name, conn.info.encoding)
        query = self._rendered.get(key)
        if query is None:
            query = self._rendered[key] = self.sql[name].as_bytes(conn)
        return query

    def create_graph(
        self,
        options: HnswOptions,
        namespace: str,
        *,
        concurrently: bool,
        rows: int | None = None,
        name: str | None = None,
    ) -> Composed:
        """The partial index that is ``namespace``'s own graph: IVFFlat or HNSW by its
        ``rows`` (HNSW when not given), named ``name`` (its usual name by default)."""
        from psycopg import sql

        if rows is not None and options.method_for(rows) == "ivfflat":
            method = sql.SQL("ivfflat")
            parameters = sql.SQL("lists = {}").format(sql.Literal(options.lists_for(rows)))
        else:
            method = sql.SQL("hnsw")
            parameters = sql.SQL("m = {}, ef_construction = {}").format(
                sql.Literal(options.m), sql.Literal(options.ef_construction)
            )
        return sql.SQL(sql_file("namespace_index.sql")).format(
            schema=self._ident,
            name=sql.Identifier(name or graph_name(namespace)),
            concurrently=sql.SQL("CONCURRENTLY" if concurrently else ""),
            method=method,
            indexed=self._indexed,
            parameters=parameters,
            namespace=sql.Literal(namespace),
        )

    def index_ident(self, name: str) -> Composed:
        from psycopg import sql

        return sql.SQL("{}.{}").format(self._ident, sql.Identifier(name))


def graph_name(namespace: str) -> str:
    """The name of a namespace's graph: stable, at most 63 bytes, safe for any text."""
    digest = hashlib.blake2b(namespace.encode("utf-8"), digest_size=10).hexdigest()
    return f"{GRAPH_PREFIX}{digest}"


def index_state(schema: str, name: str = LEGACY_INDEX_NAME) -> PgOp[bool | None]:
    """True: the index exists and is valid; False: it exists but is invalid (a failed
    concurrent build); None: it does not exist."""
    row = yield Execute(
        "SELECT i.indisvalid FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        [schema, name],
        "one",
    )
    return None if row is None else bool(row[0])


def run_search(
    stmts: VectorStatements,
    settings: Sequence[Any],
    iterative: bool,
    params: dict[str, Any],
    tuned: MutableMapping[Any, bool] | None,
    statement: str = "search",
    exact: bool = False,
) -> PgOp[list[Any]]:
    """The search in one round trip.

    ``tuned`` is given for a connection the store owns: the hnsw settings are set for
    the session the first time; a search is then a single statement, prepared once
    per connection and sent through libpq (``Prepared``), which sets its graph's
    ef_search itself. A borrowed connection gets them per transaction (SET LOCAL
    semantics via set_config), pipelined: transaction, settings, search, end; inside
    a caller's transaction a savepoint rolled back afterwards undoes them.

    ``exact``: the namespace has no graph; its rows are read exactly by one statement
    shared by all such namespaces (the namespace a parameter, one generic plan).
    """
    import psycopg
    from psycopg import pq

    conn = yield GetConnection()
    settings_sql = stmts.rendered("settings_iterative" if iterative else "settings", conn)
    if tuned is not None and conn.autocommit:
        # A namespace with a graph is written into its statement, which is prepared with
        # a generic plan: one plan per namespace (a walk of its own graph), planned once
        # per connection instead of at every search. The others share one exact scan.
        if exact:
            query = stmts.rendered(f"{statement}_exact", conn)
            values = params
        else:
            query = stmts.for_namespace(statement, params, int(settings[0]), conn)
            values = {key: value for key, value in params.items() if key not in _WRITTEN_IN}
        if conn not in tuned:
            session = [  # the session's settings, once
                Execute(settings_sql, _with_scope(settings, iterative, local=False), prepare=False),
                Execute(stmts.rendered("generic_plans", conn), prepare=False),
            ]
            yield Pipelined(session, 0)
            tuned[conn] = True
        rows: list[Any] = yield Prepared(query, values)
        return rows
    name = f"{statement}_exact" if exact else statement
    search = Execute(stmts.rendered(name, conn), params, "all", binary=True, prepare=False)
    nested = conn.info.transaction_status == pq.TransactionStatus.INTRANS
    begin = "SAVEPOINT mneme_search" if nested else ("BEGIN" if conn.autocommit else None)
    end = ["ROLLBACK TO SAVEPOINT mneme_search", "RELEASE SAVEPOINT mneme_search"]
    if not nested:
        end = ["COMMIT"]
    statements = [Execute(begin, prepare=False)] if begin is not None else []
    local = _with_scope(settings, iterative, local=True)
    statements.append(Execute(settings_sql, local, prepare=False))
    statements.append(search)
    search_at = len(statements) - 1
    statements.extend(Execute(statement, prepare=False) for statement in end)
    try:
        rows = yield Pipelined(statements, search_at)
        return rows
    except psycopg.Error:
        status = conn.info.transaction_status
        if status in (pq.TransactionStatus.INERROR, pq.TransactionStatus.INTRANS):
            if nested:
                for statement in end:
                    yield Execute(statement)
            else:
                yield Execute("ROLLBACK")
        raise


def _with_scope(settings: Sequence[Any], iterative: bool, *, local: bool) -> list[Any]:
    """set_config arguments: ef_search, probes [, max_scan_tuples], each with its scope."""
    if iterative:
        return [settings[0], local, settings[1], local, local, settings[2], local, local]
    return [settings[0], local, settings[1], local]
