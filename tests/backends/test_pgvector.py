"""PostgresStore(use_pgvector=...): server-side search, its recall, its upgrade path and
its failure modes, on real servers (embedded PostgreSQL 18 + pgvector; stock 15)."""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from mneme import SemanticCache, StoreBackendError, StoredEntry, VectorSearchStore
from mneme.stores.postgres.operations import load_rows, stage_rows
from mneme.stores.postgres.store import PostgresStore
from mneme.stores.postgres.vector import graph_name
from mneme.testing import HashingEmbedder
from pgvector_helpers import search_params, traced

pytestmark = pytest.mark.backend("pgvector")

T = TypeVar("T")
T0 = int(time.time()) - 60  # recent: the cache's confidence halves per day of age


def fp(dim: int) -> str:
    """The fingerprint SemanticCache records for the test embedder of this dim."""
    return HashingEmbedder(dim=dim).fingerprint


def unit(v: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = (v / np.linalg.norm(v)).astype(np.float32)
    return out


def entry(
    key: str,
    vector: npt.NDArray[np.float32],
    *,
    namespace: str = "default",
    created_at: int = T0,
    ttl: int | None = None,
) -> StoredEntry:
    return StoredEntry(
        id=0,
        namespace=namespace,
        query_hash=key,
        query=f"query {key}",
        response=f"answer {key}",
        embedding=vector.astype("<f4").tobytes(),
        metadata=None,
        created_at=created_at,
        last_accessed_at=created_at,
        ttl=ttl,
        access_count=0,
    )


def clustered(rng: np.random.Generator, n: int, dim: int) -> npt.NDArray[np.float32]:
    """Structured data: 20 centres, every point a centre plus noise (like embeddings)."""
    centres = rng.standard_normal((20, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = centres[rng.integers(0, 20, n)] + rng.standard_normal((n, dim)) * (0.35 / dim**0.5)
    out: npt.NDArray[np.float32] = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(
        np.float32
    )
    return out


def admin(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


@pytest.fixture
def opened_stores(postgres_dsn: str) -> Iterator[list[PostgresStore]]:
    """Stores a test opens; closed and their schemas dropped afterwards."""
    stores: list[PostgresStore] = []
    yield stores
    for store in stores:
        store.close()
    with admin(postgres_dsn) as conn:
        for schema in {s.schema for s in stores}:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def open_store(
    stores: list[PostgresStore], dsn: str, schema: str, dim: int, **options: Any
) -> PostgresStore:
    store = PostgresStore(dsn, schema=schema, **options)
    store.open(fp(dim), dim)
    stores.append(store)
    return store


def fresh() -> str:
    return f"mneme_v_{uuid.uuid4().hex[:16]}"


def load_then_index(
    stores: list[PostgresStore], dsn: str, entries: list[StoredEntry], dim: int, **options: Any
) -> PostgresStore:
    """Load on plain storage, then open with pgvector: backfill and one index build
    (much faster than inserting into an indexed table)."""
    schema = fresh()
    plain = open_store(stores, dsn, schema, dim)
    for i in range(0, len(entries), 5_000):
        plain.insert_many(entries[i : i + 5_000])
    return open_store(stores, dsn, schema, dim, use_pgvector=True, **options)


# -- capability --------------------------------------------------------------------


def test_pgvector_store_is_a_vector_search_store(
    postgres_pgvector_store_factory: Any, postgres_store_factory: Any
) -> None:
    store = postgres_pgvector_store_factory()
    assert isinstance(store, VectorSearchStore)
    assert store.index_label == "pgvector"
    assert store.vector_search_enabled is False  # not open yet
    store.open(fp(8), 8)
    assert store.vector_search_enabled is True
    plain = postgres_store_factory()
    plain.open(fp(8), 8)
    assert plain.vector_search_enabled is False  # same schema, use_pgvector=False
    store.close()
    plain.close()
    assert store.vector_search_enabled is False


class RecordingStore(PostgresStore):
    """Remembers which whole-table readers the cache called."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    def iter_vectors(self, after_id: int = 0) -> Iterator[tuple[int, str, bytes]]:
        self.calls.append("iter_vectors")
        return super().iter_vectors(after_id)

    def count(self, namespace: str | None = None) -> int:
        self.calls.append("count")
        return super().count(namespace)


def test_cache_on_a_large_pgvector_store_holds_no_vectors(
    postgres_dsn: str, opened_stores: list[PostgresStore]
) -> None:
    dim = 64
    rng = np.random.default_rng(1)
    vectors = clustered(rng, 50_000, dim)
    entries = [entry(f"k{i}", v, namespace=f"ns{i % 7}") for i, v in enumerate(vectors)]
    big = load_then_index(opened_stores, postgres_dsn, entries, dim)
    empty_schema = fresh()
    open_store(opened_stores, postgres_dsn, empty_schema, dim, use_pgvector=True)
    embedder = HashingEmbedder(dim=dim)
    timings = {}
    for label, schema in (("50k", big.schema), ("empty", empty_schema)):
        store = RecordingStore(postgres_dsn, schema=schema, use_pgvector=True)
        started = time.perf_counter()
        with SemanticCache(store=store, embedder=embedder) as cache:
            timings[label] = time.perf_counter() - started
            assert store.calls == []  # no iter_vectors, no count: nothing grows with N
            assert cache.stats().index_memory_bytes is None
            assert cache.health().index_backend == "pgvector"
            hit = cache.get("not stored", embedding=vectors[123], namespace="ns4")
            if label == "50k":
                assert hit is not None and hit.response == "answer k123"
    logging.getLogger(__name__).info("cold open: %s", timings)


# -- several processes -------------------------------------------------------------


def _child_put(dsn: str, schema: str, text: str, vector: list[float]) -> None:
    store = PostgresStore(dsn, schema=schema, use_pgvector=True)
    with SemanticCache(store=store, embedder=HashingEmbedder(dim=len(vector))) as cache:
        cache.put(text, "from the child", embedding=np.array(vector, dtype=np.float32))


def _child_delete(dsn: str, schema: str, text: str, dim: int) -> None:
    store = PostgresStore(dsn, schema=schema, use_pgvector=True)
    with SemanticCache(store=store, embedder=HashingEmbedder(dim=dim)) as cache:
        assert cache.delete(text)


def _in_child(target: Any, *args: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=target, args=args)
    proc.start()
    proc.join(120)
    assert proc.exitcode == 0


def test_writes_in_another_process_are_seen_by_the_next_get(
    postgres_dsn: str, pg_schema: str
) -> None:
    dim = 32
    vector = unit(np.random.default_rng(5).standard_normal(dim))
    near = unit(vector + 0.01 * np.random.default_rng(6).standard_normal(dim))
    store = PostgresStore(postgres_dsn, schema=pg_schema, use_pgvector=True)
    with SemanticCache(store=store, embedder=HashingEmbedder(dim=dim)) as cache:
        assert cache.get("a paraphrase", embedding=near) is None
        _in_child(_child_put, postgres_dsn, pg_schema, "the original question", vector.tolist())
        hit = cache.get("a paraphrase", embedding=near)
        assert hit is not None
        assert (hit.layer, hit.response) == ("semantic", "from the child")
        _in_child(_child_delete, postgres_dsn, pg_schema, "the original question", dim)
        assert cache.get("a paraphrase", embedding=near) is None
        assert cache.get("the original question") is None


# -- recall ------------------------------------------------------------------------


def skewed_sizes(total: int, count: int) -> list[int]:
    weights = 1.0 / np.arange(1, count + 1) ** 1.1
    sizes = np.maximum(20, np.floor(weights / weights.sum() * total)).astype(int)
    sizes[-10:] = 20  # some namespaces of 20 entries
    return [int(s) for s in sizes]


@pytest.fixture(scope="module")
def recall_data() -> dict[str, npt.NDArray[np.float32]]:
    rng = np.random.default_rng(2024)
    sizes = skewed_sizes(30_000, 50)
    return {f"ns{i:02d}": clustered(rng, n, 128) for i, n in enumerate(sizes)}


def near_duplicates(
    rng: np.random.Generator, data: npt.NDArray[np.float32], count: int
) -> list[npt.NDArray[np.float32]]:
    picks = rng.integers(0, len(data), count)
    noise = rng.standard_normal((count, data.shape[1])) * (0.1 / data.shape[1] ** 0.5)
    return [unit(data[i] + n) for i, n in zip(picks, noise, strict=True)]


def test_filtered_search_keeps_recall_in_small_and_mid_namespaces(
    postgres_dsn: str,
    opened_stores: list[PostgresStore],
    recall_data: dict[str, npt.NDArray[np.float32]],
) -> None:
    entries = [
        entry(f"{ns}-{i}", v, namespace=ns)
        for ns, vectors in recall_data.items()
        for i, v in enumerate(vectors)
    ]
    store = load_then_index(opened_stores, postgres_dsn, entries, 128)
    rng = np.random.default_rng(9)
    small = [ns for ns, v in recall_data.items() if len(v) <= 2_000]
    agree = total = 0
    for ns in small:
        for q in near_duplicates(rng, recall_data[ns], 10):
            want = int(np.argmax(recall_data[ns] @ q))
            got = store.search(ns, q, k=3, now=T0)
            total += 1
            agree += bool(got) and got[0][0].query_hash == f"{ns}-{want}"
    assert total >= 400
    assert agree / total >= 0.99, f"small-namespace top-1 agreement {agree}/{total}"

    mid = min(
        (ns for ns, v in recall_data.items() if len(v) > 2_000), key=lambda n: len(recall_data[n])
    )
    hits = 0
    queries = near_duplicates(rng, recall_data[mid], 200)
    for q in queries:
        want = int(np.argmax(recall_data[mid] @ q))
        got = store.search(mid, q, k=3, now=T0)
        hits += bool(got) and got[0][0].query_hash == f"{mid}-{want}"
    recall = hits / len(queries)
    logging.getLogger(__name__).info(
        "recall@1: small namespaces %.4f (%d queries), %s (%d rows) %.3f",
        agree / total,
        total,
        mid,
        len(recall_data[mid]),
        recall,
    )
    assert recall >= 0.95, f"{mid} ({len(recall_data[mid])} rows): recall@1 {recall}"
    # The largest namespace walks its own graph; a small one is scanned exactly — seen
    # in the plan of the store's own statement.
    largest = max(recall_data, key=lambda n: len(recall_data[n]))
    assert graph_name(largest) in explain_search(postgres_dsn, store, largest, queries[0])
    tiny = min(recall_data, key=lambda n: len(recall_data[n]))
    plan = explain_search(postgres_dsn, store, tiny, queries[0])
    assert "idx_entry_vectors_ns" in plan and "hnsw" not in plan


def explain_search(
    dsn: str, store: PostgresStore, namespace: str, q: npt.NDArray[np.float32]
) -> str:
    from pgvector.psycopg import register_vector

    assert store._vec is not None
    with admin(dsn) as conn:
        register_vector(conn)
        with conn.transaction():
            # The store's own per-search settings, then its own statement.
            probes = str(store._hnsw.ivfflat_probes)
            conn.execute(
                store._vec.sql["settings_iterative"],
                ["100", True, probes, True, True, "20000", True, True],
            )
            query = sql.SQL("EXPLAIN (COSTS OFF) ") + store._vec.sql["search"]
            rows = conn.execute(query, search_params(namespace, q), prepare=False).fetchall()
    return "\n".join(r[0] for r in rows)


# -- expiry, zero vectors, dims ----------------------------------------------------


@pytest.mark.parametrize("exact_rows", [2_000, 0], ids=["exact-branch", "hnsw-branch"])
def test_expired_entries_are_filtered_in_sql(
    postgres_dsn: str, opened_stores: list[PostgresStore], exact_rows: int
) -> None:
    dim = 16
    rng = np.random.default_rng(3)
    target = unit(rng.standard_normal(dim))
    store = open_store(
        opened_stores,
        postgres_dsn,
        fresh(),
        dim,
        use_pgvector=True,
        exact_search_max_rows=exact_rows,
        auto_index=False,
    )
    store.insert(entry("nearest-but-expired", target, ttl=10))
    store.insert(entry("expires-exactly-now", unit(target + 0.01), created_at=T0 - 5, ttl=15))
    store.insert(entry("live", unit(target + 0.2 * rng.standard_normal(dim)), ttl=100))
    store.insert(entry("forever", unit(rng.standard_normal(dim))))
    assert store.build_vector_indexes() == ([] if exact_rows else ["default"])
    found = store.search("default", target, k=3, now=T0 + 10)
    assert [e.query_hash for e, _ in found] == ["live", "forever"]
    assert found[0][1] > found[1][1]
    before = store.search("default", target, k=1, now=T0 + 9)
    assert before[0][0].query_hash == "nearest-but-expired"
    assert before[0][1] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("exact_rows", [2_000, 0], ids=["exact-branch", "hnsw-branch"])
def test_zero_vectors_are_stored_and_never_returned(
    postgres_dsn: str, opened_stores: list[PostgresStore], exact_rows: int
) -> None:
    dim = 8
    store = open_store(
        opened_stores,
        postgres_dsn,
        fresh(),
        dim,
        use_pgvector=True,
        exact_search_max_rows=exact_rows,
        auto_index=False,
    )
    zero = np.zeros(dim, dtype=np.float32)
    id_ = store.insert(entry("zero", zero))
    store.insert_many([entry("zero-2", zero), entry("nan", np.full(dim, np.nan))])
    store.build_vector_indexes()
    got = store.get_by_id(id_)
    assert got is not None and got.embedding == bytes(4 * dim)
    probe = unit(np.ones(dim))
    assert store.search("default", probe, k=3, now=T0) == []
    assert store.search("default", zero, k=3, now=T0) == []  # zero query: no query at all
    store.insert(entry("real", probe))
    assert [e.query_hash for e, _ in store.search("default", probe, k=3, now=T0)] == ["real"]


@pytest.mark.parametrize("dim", [4, 384, 2001, 4000])
def test_dimensions_end_to_end(
    postgres_dsn: str, opened_stores: list[PostgresStore], dim: int
) -> None:
    rng = np.random.default_rng(dim)
    vectors = [unit(rng.standard_normal(dim)) for _ in range(6)]
    schema = fresh()
    store = open_store(
        opened_stores, postgres_dsn, schema, dim, use_pgvector=True, exact_search_max_rows=0
    )
    ids = store.insert_many([entry(f"k{i}", v) for i, v in enumerate(vectors[:3])])
    ids += [store.insert(entry(f"k{i}", v)) for i, v in enumerate(vectors[3:], start=3)]
    store.build_vector_indexes()
    for id_, v in zip(ids, vectors, strict=True):
        best, similarity = store.search("default", v, k=2, now=T0)[0]
        assert best.id == id_
        assert similarity == pytest.approx(1.0, abs=1e-5)
    with SemanticCache(
        store=PostgresStore(postgres_dsn, schema=schema, use_pgvector=True),
        embedder=HashingEmbedder(dim=dim),
    ) as cache:
        hit = cache.get("something else", embedding=vectors[4])
        assert hit is not None and hit.response == "answer k4"
    with admin(postgres_dsn) as conn:
        indexdef = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
            [schema, graph_name("default")],
        ).fetchone()
    assert indexdef is not None
    assert f"halfvec({dim})) halfvec_cosine_ops" in indexdef[0]
    assert "WHERE ((namespace = 'default'::text) AND (NOT fresh))" in indexdef[0]


def graph_indexdefs(dsn: str, schema: str) -> list[str]:
    with admin(dsn) as conn:
        rows = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname LIKE %s "
            "ORDER BY indexname",
            [schema, "idx_ev_hnsw_%"],
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_half_precision_graphs_report_exact_similarities(
    postgres_dsn: str, opened_stores: list[PostgresStore]
) -> None:
    """The graph holds half-precision vectors; the similarity a search reports (which
    the cache weighs against its threshold) is the cosine of the stored float32
    vectors, for walked rows, fresh rows and an exactly searched namespace alike.
    Half-precision distances are off by ~1e-4 at dim 384."""
    dim = 384
    rng = np.random.default_rng(3)
    stored = clustered(rng, 600, dim)
    small = clustered(np.random.default_rng(4), 40, dim)
    store = open_store(opened_stores, postgres_dsn, fresh(), dim, use_pgvector=True)
    store.insert_many([entry(f"k{i}", v) for i, v in enumerate(stored)])
    store.insert_many([entry(f"s{i}", v, namespace="small") for i, v in enumerate(small)])
    store.build_vector_indexes()
    # Written after the build: fresh, beside the graph until the background pass.
    late = clustered(np.random.default_rng(5), 5, dim)
    for i, v in enumerate(late):
        store.insert(entry(f"late{i}", v))
    assert len(graph_indexdefs(postgres_dsn, store.schema)) == 1
    by_key = {f"k{i}": v for i, v in enumerate(stored)}
    by_key.update({f"late{i}": v for i, v in enumerate(late)})
    by_key.update({f"s{i}": v for i, v in enumerate(small)})
    worst = 0.0
    queries = [
        (ns, unit(v + rng.standard_normal(dim) * 0.02))
        for ns, v in (
            *(("default", stored[i]) for i in range(0, 600, 30)),
            *(("default", v) for v in late),
            *(("small", small[i]) for i in range(0, 40, 8)),
        )
    ]
    seen = set()
    for ns, q in queries:
        found = store.search(ns, q, k=3, now=T0)
        assert len(found) == 3
        sims = [s for _, s in found]
        assert sims == sorted(sims, reverse=True)
        for e, s in found:
            seen.add(e.query_hash[:1])
            exact = float(np.dot(by_key[e.query_hash].astype(np.float64), q.astype(np.float64)))
            worst = max(worst, abs(s - exact))
    assert seen == {"k", "l", "s"}
    assert worst < 5e-6, worst


def made_by_an_earlier_version(
    stores: list[PostgresStore],
    dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    vectors: npt.NDArray[np.float32],
    prefix: str,
) -> str:
    """A new schema with one entry ``<prefix><i>`` per vector and its graphs as earlier
    versions made them: on the full vectors, the kind recorded as 'hnsw' (the only
    difference of those versions here)."""
    import mneme.stores.postgres.operations as operations

    schema = fresh()
    with monkeypatch.context() as patch:
        patch.setattr(operations, "index_kind", lambda d: "hnsw")
        old = open_store(stores, dsn, schema, vectors.shape[1], use_pgvector=True)
        old.insert_many([entry(f"{prefix}{i}", v) for i, v in enumerate(vectors)])
        old.build_vector_indexes()
        old.close()
    return schema


def test_a_schema_with_full_precision_graphs_keeps_them(
    postgres_dsn: str, opened_stores: list[PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Side tables of earlier versions index the full vectors (recorded as 'hnsw'): a
    store of this version searches those graphs as they are, builds its new graphs the
    same way, and never rebuilds them behind the operator's back."""
    dim = 16
    vectors = clustered(np.random.default_rng(6), 400, dim)
    schema = made_by_an_earlier_version(
        opened_stores, postgres_dsn, monkeypatch, vectors[:300], "a"
    )
    (before,) = graph_indexdefs(postgres_dsn, schema)
    assert "embedding vector_cosine_ops" in before and "halfvec" not in before
    store = open_store(opened_stores, postgres_dsn, schema, dim, use_pgvector=True)
    store.insert_many([entry(f"b{i}", v, namespace="b") for i, v in enumerate(vectors[100:])])
    store.build_vector_indexes()
    defs = graph_indexdefs(postgres_dsn, schema)
    assert before in defs and len(defs) == 2
    assert all("halfvec" not in d and "vector_cosine_ops" in d for d in defs)
    for i in range(0, 300, 25):
        best, similarity = store.search("default", vectors[i], k=1, now=T0)[0]
        assert best.query_hash == f"a{i}"
        assert similarity == pytest.approx(1.0, abs=1e-6)
        best, _ = store.search("b", vectors[100 + i], k=1, now=T0)[0]
        assert best.query_hash == f"b{i}"


def test_a_schema_moves_to_half_precision_graphs_by_the_documented_steps(
    postgres_dsn: str, opened_stores: list[PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/stores/pgvector.md: with the schema's stores closed, drop the side table and
    its registry and the three pgvector keys; the next store opened with pgvector
    upgrades the schema in place, with half-precision graphs and every entry."""
    dim = 16
    vectors = clustered(np.random.default_rng(7), 500, dim)
    schema = made_by_an_earlier_version(opened_stores, postgres_dsn, monkeypatch, vectors, "k")
    assert all("halfvec" not in d for d in graph_indexdefs(postgres_dsn, schema))
    with admin(postgres_dsn) as conn:
        conn.execute(
            sql.SQL("DROP TABLE {s}.vector_graphs, {s}.entry_vectors").format(
                s=sql.Identifier(schema)
            )
        )
        conn.execute(
            sql.SQL(
                "DELETE FROM {}.schema_meta "
                "WHERE key IN ('vector_dim', 'vector_index', 'vector_layout')"
            ).format(sql.Identifier(schema))
        )
    store = open_store(opened_stores, postgres_dsn, schema, dim, use_pgvector=True)
    (graph,) = graph_indexdefs(postgres_dsn, schema)
    assert f"halfvec({dim})) halfvec_cosine_ops" in graph
    with admin(postgres_dsn) as conn:
        meta = dict(
            conn.execute(
                sql.SQL("SELECT key, value FROM {}.schema_meta").format(sql.Identifier(schema))
            ).fetchall()
        )
        side = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.entry_vectors").format(sql.Identifier(schema))
        ).fetchone()
    assert meta["vector_index"] == "hnsw_halfvec" and meta["vector_layout"] == "graphs"
    assert side is not None and side[0] == 500
    for i in range(0, 500, 50):
        best, similarity = store.search("default", vectors[i], k=1, now=T0)[0]
        assert best.query_hash == f"k{i}"
        assert similarity == pytest.approx(1.0, abs=1e-6)


def test_too_many_dimensions_are_refused_at_open(postgres_dsn: str, pg_schema: str) -> None:
    store = PostgresStore(postgres_dsn, schema=pg_schema, use_pgvector=True)
    with pytest.raises(StoreBackendError, match="4,000") as info:
        store.open(fp(4001), 4001)
    assert "use_pgvector=False" in str(info.value)
    assert store.vector_search_enabled is False


# -- knobs and session hygiene -----------------------------------------------------


def test_knobs_reach_the_index_and_search_settings_stay_local(
    postgres_dsn: str, pg_schema: str
) -> None:
    with admin(postgres_dsn) as conn:
        conn.execute("SELECT '[1]'::vector")  # loads pgvector, which defines hnsw.*
        default = conn.execute("SHOW hnsw.ef_search").fetchone()
        store = PostgresStore(
            connection=conn,
            schema=pg_schema,
            use_pgvector=True,
            hnsw_m=24,
            hnsw_ef_construction=100,
            ef_search=77,
            max_scan_tuples=3_000,
            exact_search_max_rows=0,
            ivfflat_max_rows=0,
        )
        store.open(fp(8), 8)
        v = unit(np.arange(1, 9, dtype=np.float64))
        store.insert(entry("a", v))
        assert store.build_vector_indexes() == ["default"]
        found, sent = traced(conn, lambda: store.search("default", v, k=3, now=T0))
        assert found[0][0].query_hash == "a"
        # Sent as set_config(..., true): 77 scaled to a one-row graph, 0.1 x 77.
        assert "hnsw.ef_search" in sent and "'8'" in sent
        assert conn.execute("SHOW hnsw.ef_search").fetchone() == default
        assert conn.execute("SHOW hnsw.iterative_scan").fetchone() == ("off",)
        indexdef = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
            [pg_schema, graph_name("default")],
        ).fetchone()
        store.close()
    assert indexdef is not None
    assert "m='24'" in indexdef[0] and "ef_construction='100'" in indexdef[0]


def test_a_walk_is_never_narrower_than_the_rows_asked_for(
    postgres_dsn: str, pg_schema: str
) -> None:
    rng = np.random.default_rng(11)
    vs = clustered(rng, 60, 16)
    with admin(postgres_dsn) as conn:
        store = PostgresStore(
            connection=conn,
            schema=pg_schema,
            use_pgvector=True,
            ef_search=1,
            exact_search_max_rows=0,
        )
        store.open(fp(16), 16)
        store.insert_many([entry(f"k{i}", v) for i, v in enumerate(vs)])
        assert store.build_vector_indexes() == ["default"]
        found, sent = traced(conn, lambda: store.search("default", vs[0], k=7, now=T0))
        store.close()
    # ef_search 1 scales to 1 for this graph; the walk is widened to the 7 rows asked for.
    assert "hnsw.ef_search" in sent and "'7'" in sent
    want = np.argsort(-(vs @ vs[0]), kind="stable")[:7]
    assert [e.query_hash for e, _ in found] == [f"k{i}" for i in want]
    sims = [s for _, s in found]
    assert sims == sorted(sims, reverse=True)


def test_search_inside_a_callers_transaction_leaves_its_settings(
    postgres_dsn: str, pg_schema: str
) -> None:
    with psycopg.connect(postgres_dsn) as conn:  # not autocommit
        store = PostgresStore(connection=conn, schema=pg_schema, use_pgvector=True, ef_search=91)
        store.open(fp(8), 8)
        v = unit(np.ones(8))
        store.insert(entry("a", v))
        with conn.transaction():
            conn.execute("SET LOCAL hnsw.ef_search = 55")
            assert store.search("default", v, k=1, now=T0)[0][0].query_hash == "a"
            assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("55",)
        assert store.search("default", v, k=1, now=T0)[0][0].query_hash == "a"
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        store.close()


def test_search_is_one_round_trip(postgres_dsn: str, pg_schema: str) -> None:
    with admin(postgres_dsn) as conn:
        store = PostgresStore(connection=conn, schema=pg_schema, use_pgvector=True)
        store.open(fp(8), 8)
        v = unit(np.ones(8))
        store.insert(entry("a", v))
        with tempfile.TemporaryFile() as trace:
            conn.pgconn.trace(trace.fileno())
            try:
                found = store.search("default", v, k=3, now=T0)
            finally:
                conn.pgconn.untrace()
            trace.seek(0)
            lines = trace.read().decode("utf-8", "replace").splitlines()
        store.close()
    assert [e.query_hash for e, _ in found] == ["a"]
    # One Sync from the client and one ReadyForQuery back: a single round trip.
    assert sum("\tF\t" in line and "\tSync" in line for line in lines) == 1
    assert sum("\tB\t" in line and "ReadyForQuery" in line for line in lines) == 1


# -- LRU with deferred touches -----------------------------------------------------


def test_semantic_hit_touch_is_deferred_and_still_orders_eviction(
    postgres_dsn: str, pg_schema: str
) -> None:
    dim = 16
    rng = np.random.default_rng(11)
    va, vb, vc, vd = (unit(rng.standard_normal(dim)) for _ in range(4))
    now = [float(T0)]
    store = PostgresStore(postgres_dsn, schema=pg_schema, use_pgvector=True)
    cache = SemanticCache(
        store=store,
        embedder=HashingEmbedder(dim=dim),
        max_entries=3,
        similarity_threshold=0.9,
        clock=lambda: now[0],
    )
    with cache:
        for text, v in (("A", va), ("B", vb), ("C", vc)):
            cache.put(text, f"answer {text}", embedding=v)
            now[0] += 10
        hit = cache.get("a paraphrase of A", embedding=unit(va + 0.02 * rng.standard_normal(dim)))
        assert hit is not None and (hit.layer, hit.response) == ("semantic", "answer A")
        with admin(postgres_dsn) as conn:
            written = conn.execute(
                sql.SQL("SELECT last_accessed_at FROM {}.entries WHERE response = %s").format(
                    sql.Identifier(pg_schema)
                ),
                ["answer A"],
            ).fetchone()
        assert written == (T0,)  # the touch has not been written: it was deferred
        now[0] += 10
        cache.put("D", "answer D", embedding=vd)  # over max_entries: evicts one
        assert cache.get("B") is None
        assert cache.get("A") is not None
        assert cache.get("C") is not None


# -- in-place upgrade --------------------------------------------------------------


def _namespace_runs(dsn: str, schema: str) -> int:
    """Runs of one namespace in the side table's physical order (ctid)."""
    with admin(dsn) as conn:
        names: list[str] = [
            str(row[0])
            for row in conn.execute(
                sql.SQL("SELECT namespace FROM {}.entry_vectors ORDER BY ctid").format(
                    sql.Identifier(schema)
                )
            )
        ]
    return 1 + sum(a != b for a, b in itertools.pairwise(names))


@pytest.mark.parametrize("how", ["put_many", "upgrade"])
def test_batches_write_side_rows_namespace_by_namespace(
    postgres_dsn: str, opened_stores: list[PostgresStore], how: str
) -> None:
    """An exact scan of a small namespace reads its rows' heap pages: written together,
    they share a few pages instead of one each. Entries arrive interleaved (five
    namespaces in turn); the side rows of a bulk load's chunk, or of a backfill batch,
    land grouped by namespace."""
    dim, n = 16, 2_000
    rng = np.random.default_rng(5)
    entries = [
        entry(f"k{i}", unit(rng.standard_normal(dim)), namespace=f"ns{i % 5}") for i in range(n)
    ]
    schema = fresh()
    if how == "put_many":
        store = open_store(opened_stores, postgres_dsn, schema, dim, use_pgvector=True)
        store.insert_many(entries)
    else:
        load_then_index(opened_stores, postgres_dsn, entries, dim)
        schema = opened_stores[-1].schema
    with admin(postgres_dsn) as conn:
        counted = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.entry_vectors").format(sql.Identifier(schema))
        ).fetchone()
    assert counted == (n,)
    # A single backfill batch: one run per namespace; a put_many: one per COPY chunk.
    chunks = -(-n // load_rows(dim, True)) if how == "put_many" else 1
    assert _namespace_runs(postgres_dsn, schema) == 5 * chunks


def _side_table_options(dsn: str, schema: str) -> list[str]:
    with admin(dsn) as conn:
        row = conn.execute(
            "SELECT coalesce(c.reloptions, '{}') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = 'entry_vectors'",
            [schema],
        ).fetchone()
    assert row is not None
    return sorted(row[0])


def test_large_vectors_load_inline_and_their_rewrites_stage_uncompressed(
    postgres_dsn: str, opened_stores: list[PostgresStore]
) -> None:
    dim, n = 1536, 1_000
    assert stage_rows(dim, True) < n // 2  # several staged chunks, each within temp_buffers
    rng = np.random.default_rng(5)
    vectors = unit(rng.standard_normal((n, dim)))
    # Every tenth response is larger than a page: those rows go out of line.
    batch = [
        replace(
            entry(f"k{i}", vectors[i]), response=f"r{i} " + "x" * (9_000 if i % 10 == 0 else 50)
        )
        for i in range(n)
    ]
    schema = fresh()
    store = open_store(opened_stores, postgres_dsn, schema, dim, use_pgvector=True)
    assert _side_table_options(postgres_dsn, schema) == [
        "fillfactor=90",
        "toast_tuple_target=8160",
    ]
    # New keys go straight into the tables; the same keys again, through the staging
    # table's upsert.
    for load in (batch, [replace(e, response=e.response + " again") for e in batch]):
        ids = store.insert_many(load)
        assert len(set(ids)) == n
        got = store.get_many_by_hash("default", [f"k{i}" for i in range(n)])
        for i in (0, 1, 10, 471, 472, 999):
            assert got[f"k{i}"].response == load[i].response
            assert got[f"k{i}"].embedding == load[i].embedding
        top = store.search("default", vectors[10], k=1, now=T0)
        assert [(e.query_hash, round(s, 5)) for e, s in top] == [("k10", 1.0)]
    with admin(postgres_dsn) as conn:
        storage = conn.execute(
            "SELECT DISTINCT a.attname, a.attstorage FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.relname = 'mneme_stage_v' AND c.relpersistence = 't' "
            "AND a.attname IN ('query', 'response', 'embedding', 'metadata')"
        ).fetchall()
    assert sorted(storage) == [(c, "e") for c in ("embedding", "metadata", "query", "response")]
    # A side table of an earlier version: its owner's next open sets the target.
    with admin(postgres_dsn) as conn:
        conn.execute(
            sql.SQL("ALTER TABLE {}.entry_vectors RESET (toast_tuple_target)").format(
                sql.Identifier(schema)
            )
        )
    assert _side_table_options(postgres_dsn, schema) == ["fillfactor=90"]
    open_store(opened_stores, postgres_dsn, schema, dim, use_pgvector=True)
    assert "toast_tuple_target=8160" in _side_table_options(postgres_dsn, schema)


def test_upgrade_in_place_while_another_process_writes(
    postgres_dsn: str, pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    dim = 32
    rng = np.random.default_rng(21)
    first = PostgresStore(postgres_dsn, schema=pg_schema)
    first.open(fp(dim), dim)
    vectors: dict[str, npt.NDArray[np.float32]] = {}
    batch = []
    for i in range(6_000):
        vectors[f"old-{i}"] = unit(rng.standard_normal(dim))
        batch.append(entry(f"old-{i}", vectors[f"old-{i}"], namespace=f"ns{i % 5}"))
    first.insert_many(batch)
    writer = PostgresStore(postgres_dsn, schema=pg_schema)  # opened before the upgrade
    writer.open(fp(dim), dim)
    stop = threading.Event()
    durations: list[float] = []
    errors: list[BaseException] = []
    written: dict[str, npt.NDArray[np.float32]] = {}

    def write() -> None:
        n = 0
        local = np.random.default_rng(22)
        while not stop.is_set():
            key = f"new-{n}"
            v = unit(local.standard_normal(dim))
            started = time.perf_counter()
            try:
                writer.insert(entry(key, v, namespace=f"ns{n % 5}"))
            except BaseException as exc:
                errors.append(exc)
                return
            durations.append(time.perf_counter() - started)
            written[key] = v
            n += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="mneme.postgres"):
            upgraded = PostgresStore(postgres_dsn, schema=pg_schema, use_pgvector=True)
            upgraded.open(fp(dim), dim)
        time.sleep(0.3)  # the writer keeps going after the upgrade too
    finally:
        stop.set()
        thread.join(60)
    try:
        assert errors == []
        assert len(written) > 10 and max(durations) < 5.0
        messages = [r.getMessage() for r in caplog.records]
        assert any("backfilled 5000 / 60" in m for m in messages)  # 6,000 + the writer's
        assert any("graph of namespace" in m and "built in" in m for m in messages)
        graphs = {g.namespace: g for g in upgraded.vector_index_status()}
        assert {g.state for g in graphs.values()} == {"ready"}  # 5 namespaces of ~1,200
        everything = {**vectors, **written}
        missing = []
        for key, v in everything.items():
            found = upgraded.search(f"ns{int(key.split('-')[1]) % 5}", v, k=1, now=T0)
            if not found or found[0][0].query_hash != key or found[0][1] < 0.9999:
                missing.append(key)
        assert missing == []
    finally:
        for s in (first, writer, upgraded):
            s.close()


# -- pgvector unavailable ----------------------------------------------------------


@pytest.mark.backend("pg15")
def test_pgvector_missing_on_the_server(pg15_dsn: str, pg15_schema: str) -> None:
    store = PostgresStore(pg15_dsn, schema=pg15_schema, use_pgvector=True)
    with pytest.raises(StoreBackendError, match="pgvector") as info:
        store.open(fp(16), 16)
    assert "CREATE EXTENSION vector" in str(info.value)
    assert "use_pgvector='auto'" in str(info.value)

    auto = PostgresStore(pg15_dsn, schema=pg15_schema, use_pgvector="auto")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = SemanticCache(store=auto, embedder=HashingEmbedder(dim=16))
    assert [w.category for w in caught] == [RuntimeWarning]
    assert "pgvector" in str(caught[0].message)
    with cache:
        assert auto.vector_search_enabled is False
        assert cache.health().index_backend != "pgvector"
        v = unit(np.ones(16))
        cache.put("stored", "kept", embedding=v)
        hit = cache.get("paraphrase", embedding=v)
        assert hit is not None and (hit.layer, hit.response) == ("semantic", "kept")


def test_role_that_may_not_create_the_extension(postgres_dsn: str) -> None:
    role = f"mneme_noext_{uuid.uuid4().hex[:10]}"
    database = f"{role}_db"
    with admin(postgres_dsn) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(role)
            )
        )
    try:
        dsn = make_conninfo(postgres_dsn, user=role, dbname=database)
        store = PostgresStore(dsn, schema="mneme", use_pgvector=True)
        with pytest.raises(StoreBackendError, match="could not create") as info:
            store.open(fp(8), 8)
        assert "CREATE EXTENSION vector" in str(info.value)
        assert isinstance(info.value.__cause__, psycopg.errors.InsufficientPrivilege)
    finally:
        with admin(postgres_dsn) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_plain_store_on_an_upgraded_schema_keeps_the_side_table_written(
    postgres_dsn: str, pg_schema: str
) -> None:
    dim = 8
    vec_store = PostgresStore(postgres_dsn, schema=pg_schema, use_pgvector=True)
    vec_store.open(fp(dim), dim)
    plain = PostgresStore(postgres_dsn, schema=pg_schema)  # use_pgvector=False
    plain.open(fp(dim), dim)
    try:
        assert plain.vector_search_enabled is False
        v = unit(np.arange(1, dim + 1, dtype=np.float64))
        id_ = plain.insert(entry("by-plain", v))
        ids = plain.insert_many([entry(f"many-{i}", unit(v + i)) for i in range(3)])
        assert vec_store.search("default", v, k=1, now=T0)[0][0].id == id_
        plain.insert(replace(entry("by-plain", -v), response="replaced"))
        found = vec_store.search("default", -v, k=1, now=T0)
        assert (found[0][0].id, found[0][0].response) == (id_, "replaced")
        assert plain.delete_many(ids) == {"default": 3}
        with admin(postgres_dsn) as conn:
            side = conn.execute(
                sql.SQL("SELECT count(*) FROM {}.entry_vectors").format(sql.Identifier(pg_schema))
            ).fetchone()
        assert side == (1,)  # deletes cascade
    finally:
        plain.close()
        vec_store.close()


def test_rebuild_vector_index(postgres_dsn: str, opened_stores: list[PostgresStore]) -> None:
    store = open_store(
        opened_stores,
        postgres_dsn,
        fresh(),
        8,
        use_pgvector=True,
        exact_search_max_rows=0,
        auto_index=False,
    )
    v = unit(np.ones(8))
    store.insert(entry("a", v))
    store.insert(entry("b", -v, namespace="other"))
    assert sorted(store.build_vector_indexes()) == ["default", "other"]
    assert store.rebuild_vector_index("default") == [graph_name("default")]
    assert sorted(store.rebuild_vector_index()) == sorted(map(graph_name, ["default", "other"]))
    assert store.search("default", v, k=1, now=T0)[0][0].query_hash == "a"
    plain = open_store(opened_stores, postgres_dsn, fresh(), 8)
    with pytest.raises(StoreBackendError, match="no pgvector side table"):
        plain.rebuild_vector_index()


def test_search_through_a_pool_of_non_autocommit_connections(
    postgres_dsn: str, pg_schema: str
) -> None:
    from psycopg_pool import ConnectionPool

    with ConnectionPool(postgres_dsn, min_size=1, max_size=2, open=True) as pool:
        store = PostgresStore(pool=pool, schema=pg_schema, use_pgvector=True)
        store.open(fp(8), 8)
        v = unit(np.arange(1, 9, dtype=np.float64))
        store.insert_many([entry("a", v), entry("b", -v)])
        for _ in range(3):  # every borrowed connection gets the adapters, and goes back idle
            found = store.search("default", v, k=2, now=T0)
            assert [e.query_hash for e, _ in found] == ["a", "b"]
            assert found[0][1] == pytest.approx(1.0, abs=1e-5)
            assert found[1][1] == pytest.approx(-1.0, abs=1e-5)
        store.close()
        assert pool.get_stats()["pool_available"] == pool.get_stats()["pool_size"]
