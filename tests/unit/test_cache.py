"""SemanticCache behaviour on MemoryStore or a SQLite file, which are fast.

The core lookups (exact and semantic layers, validator, confidence, TTL, tenants,
persisted counters) run against every store in ``tests/backends/test_cache_every_store.py``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from cache_helpers import E0, CacheMaker, Events, at_cos, counters, entry_for, store_of, table
from conftest import FakeClock
from mneme import (
    CacheClosedError,
    EmbedderDimensionError,
    EmbedderMismatchError,
    Hit,
    MemoryStore,
    QuantizationError,
    SemanticCache,
    SQLiteStore,
    Store,
)
from mneme.testing import HashingEmbedder, TableEmbedder


def f32(x: float) -> float:
    return float(np.float32(x))


class RecordingEmbedder:
    """HashingEmbedder that records every text it sees; batch method optional."""

    def __init__(self, dim: int = 64) -> None:
        self.inner = HashingEmbedder(dim=dim)
        self.texts: list[str] = []
        self.batches: list[list[str]] = []

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        self.texts.append(text)
        return self.inner.embed(text)


class RecordingBatchEmbedder(RecordingEmbedder):
    def embed_many(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.batches.append(list(texts))
        return self.inner.embed_many(texts)


@pytest.fixture
def make_cache(clock: FakeClock) -> Iterator[CacheMaker]:
    """Build caches on fresh MemoryStores (or a given store); closes them all."""
    made: list[SemanticCache] = []

    def make(embedder: Any = None, *, store: Store | None = None, **kwargs: Any) -> SemanticCache:
        cache = SemanticCache(
            store=store if store is not None else MemoryStore(),
            embedder=embedder if embedder is not None else table(),
            clock=clock,
            **kwargs,
        )
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


# -- lookup details on MemoryStore --------------------------------------------------


def test_normalize_false_keeps_queries_distinct(make_cache: CacheMaker) -> None:
    cache = make_cache(HashingEmbedder(dim=64), normalize=False)
    cache.put("Hello World", "greeting")
    assert entry_for_raw(cache, "Hello World") is not None
    assert entry_for_raw(cache, "hello world") is None
    hit = cache.get("hello world")
    # Not an exact hit: only the (case-insensitive) embedder brings it back.
    assert hit is not None
    assert hit.layer == "semantic"
    exact = cache.get("Hello World")
    assert exact is not None
    assert exact.layer == "exact"


def entry_for_raw(cache: SemanticCache, text: str) -> Any:
    return store_of(cache).get_by_hash("default", hashlib.sha256(text.encode()).hexdigest())


def test_embedder_sees_normalised_text(make_cache: CacheMaker) -> None:
    embedder = RecordingEmbedder()
    cache = make_cache(embedder)
    cache.put("  What IS\n the   Answer? ", "42")
    assert embedder.texts == ["what is the answer?"]
    cache.get("WHAT is the question?")
    assert embedder.texts[-1] == "what is the question?"
    n = len(embedder.texts)
    assert cache.get("what is the answer?") is not None  # exact: no embedding needed
    assert len(embedder.texts) == n


def test_casefold_not_just_lower(make_cache: CacheMaker) -> None:
    cache = make_cache(HashingEmbedder(dim=64))
    cache.put("STRASSE", "street")
    hit = cache.get("straße")
    assert hit is not None
    assert hit.layer == "exact"


def test_threshold_boundary_exact_float32(make_cache: CacheMaker) -> None:
    events = Events()
    cache = make_cache(metrics_hook=events)
    cache.put("query", "on e0")
    probe = at_cos(0.85)
    # Layer 2 works in float32: the similarity is float32(0.85), just above 0.85.
    expected = f32(0.85)
    assert expected > 0.85
    hit = cache.get("probe", embedding=probe)
    assert hit is not None
    assert hit.similarity == expected
    cache.set_similarity_threshold(expected)
    hit = cache.get("probe", embedding=probe)
    assert hit is not None
    assert hit.similarity == expected
    cache.set_similarity_threshold(float(np.nextafter(expected, 2.0)))
    assert cache.get("probe", embedding=probe) is None
    assert events.miss_reasons() == ["below_threshold"]
    cache.set_similarity_threshold(float(np.nextafter(expected, -2.0)))
    assert cache.get("probe", embedding=probe) is not None


def test_threshold_boundary_constructor(make_cache: CacheMaker) -> None:
    events = Events()
    probe = at_cos(0.9)
    sim = f32(0.9)
    above = make_cache(metrics_hook=events, similarity_threshold=sim)
    above.put("query", "r")
    assert above.get("p", embedding=probe) is not None
    below = make_cache(metrics_hook=events, similarity_threshold=float(np.nextafter(sim, 1.0)))
    below.put("query", "r")
    assert below.get("p", embedding=probe) is None
    assert events.miss_reasons() == ["below_threshold"]


def test_get_with_embedding_skips_embedder(make_cache: CacheMaker) -> None:
    embedder = table()
    cache = make_cache(embedder)
    cache.put("c95", "r")
    calls = embedder.calls
    hit = cache.get("not in the table", embedding=[5.0, 0.0, 0.0, 0.0])  # normalised
    assert hit is not None
    assert hit.similarity == pytest.approx(0.95, abs=1e-6)
    assert embedder.calls == calls


def test_embedder_failure_is_a_miss(
    make_cache: CacheMaker, caplog: pytest.LogCaptureFixture
) -> None:
    events = Events()
    cache = make_cache(metrics_hook=events)
    cache.put("c99", "r")
    with caplog.at_level(logging.WARNING, logger="mneme"):
        assert cache.get("not in the table") is None
    assert events.miss_reasons() == ["embedder_failure"]
    logged = [r for r in caplog.records if "embedder" in r.getMessage()]
    assert [r.levelname for r in logged] == ["WARNING"]
    assert logged[0].exc_info is not None
    assert cache.stats().misses == 1
    with pytest.raises(KeyError):  # on put the embedder's error propagates
        cache.put("not in the table", "r")
    assert cache.stats().entries == 1


def test_wrong_shape_embedding_on_get_is_a_miss(make_cache: CacheMaker) -> None:
    events = Events()
    cache = make_cache(metrics_hook=events)
    cache.put("c99", "r")
    assert cache.get("x", embedding=[1.0, 0.0, 0.0]) is None
    assert cache.get("x", embedding=np.ones((2, 4))) is None
    assert events.miss_reasons() == ["dim_mismatch", "dim_mismatch"]


def test_wrong_dim_embedder_output_on_get_is_a_miss(make_cache: CacheMaker) -> None:
    events = Events()
    bad = TableEmbedder({"q": [1.0, 0.0, 0.0, 0.0]}, dim=4)
    cache = make_cache(bad, metrics_hook=events)
    cache.put("c", "r", embedding=E0)
    bad._table["x"] = np.ones(3, dtype=np.float32)
    assert cache.get("x") is None
    assert events.miss_reasons() == ["dim_mismatch"]


def test_wrong_shape_embedding_on_put_raises(make_cache: CacheMaker) -> None:
    cache = make_cache()
    with pytest.raises(EmbedderDimensionError, match="dim"):
        cache.put("c99", "r", embedding=[1.0, 0.0])
    assert cache.stats().entries == 0


def test_embedder_wrong_dim_on_put_raises(make_cache: CacheMaker) -> None:
    bad = TableEmbedder({"q": [1.0, 0.0, 0.0, 0.0]}, dim=4)
    cache = make_cache(bad)
    bad._table["x"] = np.ones(5, dtype=np.float32)
    with pytest.raises(EmbedderDimensionError, match="dim"):
        cache.put("x", "r")
    assert cache.stats().entries == 0


def test_bypass_returns_none_and_counts_a_miss(make_cache: CacheMaker) -> None:
    events = Events()
    cache = make_cache(metrics_hook=events)
    cache.put("c99", "r")
    assert cache.get("c99", bypass=True) is None
    assert events.calls == [("miss", {"namespace": "default", "reason": "bypass"})]
    stats = cache.stats()
    assert (stats.hits_exact, stats.misses) == (0, 1)
    hit = cache.get("c99")  # the entry is still there
    assert hit is not None and hit.layer == "exact"


def test_hit_metadata_is_not_shared_with_the_store(make_cache: CacheMaker) -> None:
    cache = make_cache()
    meta = {"tags": ["a"]}
    cache.put("c99", "r", metadata=meta)
    meta["tags"].append("changed by caller")
    hit = cache.get("c99")
    assert hit is not None
    assert hit.metadata == {"tags": ["a"]}
    assert hit.metadata is not None
    hit.metadata["tags"].append("changed by reader")
    again = cache.get("c99")
    assert again is not None
    assert again.metadata == {"tags": ["a"]}


def test_no_metadata_is_an_empty_dict_for_hits_and_confidence(make_cache: CacheMaker) -> None:
    seen: list[object] = []

    def confidence(similarity: float, age: float, metadata: Any) -> float:
        seen.append(metadata)
        return similarity

    cache = make_cache(confidence_fn=confidence)
    cache.put("c99", "r")
    exact, semantic = cache.get("c99"), cache.get("query")
    assert exact is not None and exact.metadata == {}
    assert semantic is not None and semantic.metadata == {}
    assert seen == [{}]


def test_delete(make_cache: CacheMaker) -> None:
    cache = make_cache()
    cache.put("c99", "r")
    assert cache.delete("  C99 ") is True
    assert cache.delete("c99") is False
    assert cache.get("query") is None
    assert cache.stats().entries == 0


# -- metrics hook -------------------------------------------------------------------


def test_raising_hook_is_logged_not_propagated(
    make_cache: CacheMaker, caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    def hook(event: str, fields: Mapping[str, Any]) -> None:
        raise RuntimeError("hook broke")

    cache = make_cache(metrics_hook=hook, max_entries=1)
    with caplog.at_level(logging.ERROR, logger="mneme"):
        cache.put("c99", "r")
        hit = cache.get("query")
        assert hit is not None
        assert hit.response == "r"
        assert cache.get("far") is None
        cache.put("c50", "x")  # evicts
        cache.put("c90", "y", ttl=1)
        clock.advance(1)
        assert cache.get("c90") is None
    logged = [r for r in caplog.records if r.exc_info is not None]
    assert len(logged) >= 4
    assert all("hook" in r.getMessage() for r in logged)
    assert cache.stats().hits_semantic == 1


# -- eviction -----------------------------------------------------------------------


@pytest.mark.parametrize(("cap", "left"), [(10, 10), (50, 46), (5, 5), (100, 91)])
def test_namespace_quota_eviction(make_cache: CacheMaker, cap: int, left: int) -> None:
    events = Events()
    cache = make_cache(HashingEmbedder(dim=16), namespace_quotas={"a": cap}, metrics_hook=events)
    for i in range(5):
        cache.put(f"b{i}", "r", namespace="b")
    for i in range(cap + 1):
        cache.put(f"a{i}", "r", namespace="a")
    assert cache.stats(namespace="a").entries == left
    assert cache.stats(namespace="b").entries == 5
    evicted = cap + 1 - left
    assert events.of("eviction") == [{"namespace": "a", "count": evicted}]
    assert cache.stats(namespace="a").evictions == evicted
    assert cache.stats(namespace="b").evictions == 0
    # Same timestamps: LRU falls back to id order, so the first puts went.
    survivors = {e.query for e in store_of(cache).iter_all() if e.namespace == "a"}
    assert survivors == {f"a{i}" for i in range(evicted, cap + 1)}


def test_max_entries_global_batch(make_cache: CacheMaker) -> None:
    events = Events()
    cache = make_cache(HashingEmbedder(dim=16), max_entries=20, metrics_hook=events)
    for i in range(10):
        cache.put(f"x{i}", "r", namespace="x")
    for i in range(11):
        cache.put(f"y{i}", "r", namespace="y")
    # 21 > 20: batch = max(1, 2, 1) = 2, the two oldest (both in x).
    assert cache.stats().entries == 19
    assert events.of("eviction") == [{"namespace": "x", "count": 2}]
    assert entry_for(cache, "x0", "x") is None
    assert entry_for(cache, "x1", "x") is None
    assert entry_for(cache, "x2", "x") is not None
    assert cache.stats().evictions == 2


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_lru_prefers_recently_read(
    make_cache: CacheMaker, clock: FakeClock, tmp_path: Path, backend: str
) -> None:
    store: Store = MemoryStore() if backend == "memory" else SQLiteStore(str(tmp_path / "c.db"))
    cache = make_cache(HashingEmbedder(dim=16), store=store, max_entries=3)
    for name in ("alpha", "beta", "gamma"):
        cache.put(name, name.upper())
        clock.advance(1)
    assert cache.get("alpha") is not None  # alpha is now the most recently used
    clock.advance(1)
    cache.put("delta", "DELTA")
    assert entry_for(cache, "beta") is None
    assert {e.query for e in store.iter_all()} == {"alpha", "gamma", "delta"}
    clock.advance(1)
    cache.put("epsilon", "EPSILON")
    assert {e.query for e in store.iter_all()} == {"alpha", "delta", "epsilon"}
    assert cache.stats().evictions == 2


def test_quota_takes_precedence_over_max_entries(make_cache: CacheMaker) -> None:
    events = Events()
    cache = make_cache(
        HashingEmbedder(dim=16), max_entries=3, namespace_quotas={"q": 2}, metrics_hook=events
    )
    cache.put("o1", "r", namespace="other")
    cache.put("o2", "r", namespace="other")
    cache.put("q1", "r", namespace="q")
    cache.put("q2", "r", namespace="q")  # 4 > 3 globally: the oldest (o1) goes
    assert events.of("eviction") == [{"namespace": "other", "count": 1}]
    cache.put("q3", "r", namespace="q")  # q over its quota: q1 goes, not "other"
    assert events.of("eviction")[-1] == {"namespace": "q", "count": 1}
    assert cache.stats(namespace="other").entries == 1
    assert cache.stats(namespace="q").entries == 2


# -- threads and lifecycle ----------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_threads(make_cache: CacheMaker, tmp_path: Path, backend: str) -> None:
    store: Store = MemoryStore() if backend == "memory" else SQLiteStore(str(tmp_path / "t.db"))
    cache = make_cache(HashingEmbedder(dim=32), store=store)
    errors: list[BaseException] = []
    wrong: list[str] = []

    def work(t: int) -> None:
        try:
            for i in range(40):
                q = f"thread {t} item {i}"
                cache.put(q, f"answer {t}/{i}", namespace=f"ns{t % 2}")
                hit = cache.get(q, namespace=f"ns{t % 2}")
                if hit is None or hit.response != f"answer {t}/{i}":
                    wrong.append(q)
                cache.get(f"thread {t} missing {i}", namespace=f"ns{t % 2}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert wrong == []
    stats = cache.stats()
    assert stats.entries == 320
    assert stats.hits_exact == 320
    assert stats.hits_exact + stats.hits_semantic + stats.misses == 640
    assert cache.stats(namespace="ns0").entries == 160


CLOSED_CALLS: dict[str, Callable[[SemanticCache], object]] = {
    "get": lambda c: c.get("query"),
    "get_many": lambda c: c.get_many(["query"]),
    "put": lambda c: c.put("query", "r"),
    "put_many": lambda c: c.put_many([{"query": "query", "response": "r"}]),
    "delete": lambda c: c.delete("query"),
    "vacuum": lambda c: c.vacuum(),
    "compact": lambda c: c.compact(),
    "stats": lambda c: c.stats(),
    "health": lambda c: c.health(),
    "list_namespaces": lambda c: c.list_namespaces(),
    "clear_namespace": lambda c: c.clear_namespace("default"),
    "clear": lambda c: c.clear(),
    "requantize": lambda c: c.requantize("float16"),
    "set_similarity_threshold": lambda c: c.set_similarity_threshold(0.5),
    "dumps": lambda c: c.dumps("/nonexistent/never-written.jsonl"),
    "enter": lambda c: c.__enter__(),
}


@pytest.mark.parametrize("method", sorted(CLOSED_CALLS))
def test_closed_cache_raises(make_cache: CacheMaker, method: str) -> None:
    cache = make_cache()
    cache.put("query", "r")
    cache.close()
    with pytest.raises(CacheClosedError):
        CLOSED_CALLS[method](cache)


def test_close_idempotent_and_context_manager(tmp_path: Path) -> None:
    path = str(tmp_path / "cm.db")
    with SemanticCache(path, HashingEmbedder(dim=16)) as cache:
        cache.put("q", "r")
    with pytest.raises(CacheClosedError):
        cache.get("q")
    cache.close()
    cache.close()
    with SemanticCache(path, HashingEmbedder(dim=16)) as again:
        hit = again.get("q")
        assert hit is not None
        assert hit.response == "r"


# -- constructor ----------------------------------------------------------------------


def test_constructor_needs_exactly_one_of_path_or_store(tmp_path: Path) -> None:
    e = HashingEmbedder(dim=16)
    with pytest.raises(ValueError, match="exactly one"):
        SemanticCache(embedder=e)
    with pytest.raises(ValueError, match="exactly one"):
        SemanticCache(str(tmp_path / "x.db"), e, store=MemoryStore())


def test_constructor_needs_embedder() -> None:
    with pytest.raises(ValueError, match="embedder"):
        SemanticCache(store=MemoryStore())


@pytest.mark.parametrize("bad", [1.5, -1.01, math.nan, math.inf, -math.inf])
def test_bad_threshold(bad: float) -> None:
    with pytest.raises(ValueError, match="similarity_threshold"):
        SemanticCache(
            store=MemoryStore(), embedder=HashingEmbedder(dim=16), similarity_threshold=bad
        )


@pytest.mark.parametrize("bad", [1.5, -1.01, math.nan, math.inf, -math.inf])
def test_set_similarity_threshold_bounds(make_cache: CacheMaker, bad: float) -> None:
    cache = make_cache()
    with pytest.raises(ValueError, match="similarity_threshold"):
        cache.set_similarity_threshold(bad)
    assert cache.similarity_threshold == 0.85


@pytest.mark.parametrize("good", [-1.0, 0.0, 1.0, 0.5])
def test_set_similarity_threshold_accepts(make_cache: CacheMaker, good: float) -> None:
    cache = make_cache()
    cache.set_similarity_threshold(good)
    assert cache.similarity_threshold == good


def test_reopen_with_other_fingerprint(tmp_path: Path) -> None:
    path = str(tmp_path / "fp.db")
    SemanticCache(path, HashingEmbedder(dim=16)).close()
    other = TableEmbedder({}, dim=16)
    with pytest.raises(EmbedderMismatchError, match="reembed"):
        SemanticCache(path, other)


def test_reopen_with_other_dim(tmp_path: Path) -> None:
    path = str(tmp_path / "dim.db")

    class SameNameOtherDim(HashingEmbedder):
        @property
        def fingerprint(self) -> str:
            return "fixed"

    SemanticCache(path, SameNameOtherDim(dim=16)).close()
    with pytest.raises(EmbedderDimensionError, match="reembed"):
        SemanticCache(path, SameNameOtherDim(dim=32))
    # The original embedder still opens it.
    SemanticCache(path, SameNameOtherDim(dim=16)).close()


def test_unknown_vector_dtype() -> None:
    with pytest.raises(QuantizationError, match="float64"):
        SemanticCache(
            store=MemoryStore(),
            embedder=HashingEmbedder(dim=16),
            vector_dtype="float64",  # type: ignore[arg-type]
        )


def test_hnsw_backend(make_cache: CacheMaker) -> None:
    cache = make_cache(index_backend="hnsw")
    cache.put("c95", "r")
    hit = cache.get("query")
    assert hit is not None
    assert hit.similarity == pytest.approx(0.95, abs=1e-4)
    assert cache.health().index_backend == "hnsw"


# -- batches --------------------------------------------------------------------------


def _batch_ops() -> tuple[list[dict[str, Any]], list[str]]:
    items: list[dict[str, Any]] = [
        {"query": "what is the capital of france", "response": "Paris"},
        {"query": "how tall is mount everest", "response": "8849 m", "metadata": {"u": "m"}},
        {"query": "who wrote hamlet", "response": "Shakespeare", "ttl": 30},
        {"query": "short lived answer", "response": "gone soon", "ttl": 5},
        {"query": "an empty answer", "response": ""},
        {"query": "WHO wrote   Hamlet", "response": "William Shakespeare"},
    ]
    queries = [
        "what is the capital of france",
        "What is the capital city of France",
        "who wrote hamlet",
        "short lived answer",
        "short lived answer",
        "something unrelated about sourdough",
        "how tall is mount everest?",
        "what is the capital of france",
    ]
    return items, queries


def _hit_key(h: Hit | None) -> tuple[Any, ...] | None:
    if h is None:
        return None
    return (h.response, h.layer, round(h.similarity, 5), h.namespace, h.metadata, h.age_seconds)


def test_batches_equal_loops(make_cache: CacheMaker, clock: FakeClock) -> None:
    items, queries = _batch_ops()
    batch_events, loop_events = Events(), Events()
    batched = make_cache(RecordingBatchEmbedder(), metrics_hook=batch_events)
    looped = make_cache(RecordingEmbedder(), metrics_hook=loop_events)
    batched.put_many(items)
    for item in items:
        looped.put(**item)
    clock.advance(5)
    got = batched.get_many(queries)
    want = [looped.get(q) for q in queries]
    assert [_hit_key(h) for h in got] == [_hit_key(h) for h in want]
    assert sum(h is not None for h in want) >= 4
    assert counters(batched.stats()) == counters(looped.stats())
    assert sorted(map(str, batch_events.calls)) == sorted(map(str, loop_events.calls))
    assert [(e.query, e.response, e.access_count) for e in store_of(batched).iter_all()] == [
        (e.query, e.response, e.access_count) for e in store_of(looped).iter_all()
    ]


def test_get_many_matches_loop_when_semantic_step_deletes(make_cache: CacheMaker) -> None:
    # Looking up "query" deletes the invalid "c99" (its nearest neighbour); a loop
    # then misses "c99" exactly, so the batch must too.
    batched = make_cache()
    looped = make_cache()
    for cache in (batched, looped):
        cache.put("c99", "")
        cache.put("c95", "good")
    queries = ["query", "c99"]
    got = batched.get_many(queries)
    want = [looped.get(q) for q in queries]
    assert [_hit_key(h) for h in got] == [_hit_key(h) for h in want]
    assert counters(batched.stats()) == counters(looped.stats())
    assert store_of(batched).count() == store_of(looped).count()


def test_one_embed_many_call_per_batch(make_cache: CacheMaker) -> None:
    embedder = RecordingBatchEmbedder()
    cache = make_cache(embedder)
    cache.put_many(
        [
            {"query": "First Question", "response": "1"},
            {"query": "second question", "response": "2"},
            {"query": "third", "response": "3", "embedding": HashingEmbedder(64).embed("x")},
        ]
    )
    assert embedder.batches == [["first question", "second question"]]
    assert embedder.texts == []
    results = cache.get_many(["first question", "unknown one", "another unknown"])
    assert results[0] is not None
    assert results[0].layer == "exact"
    assert embedder.batches[1:] == [["unknown one", "another unknown"]]
    assert embedder.texts == []


def test_get_many_without_batch_method(make_cache: CacheMaker) -> None:
    embedder = RecordingEmbedder()
    cache = make_cache(embedder)
    cache.put("alpha beta", "r")
    results = cache.get_many(["alpha beta", "gamma delta", "epsilon"])
    assert results[0] is not None
    assert results[1:] == [None, None]
    assert embedder.texts == ["alpha beta", "gamma delta", "epsilon"]


def test_get_many_empty(make_cache: CacheMaker) -> None:
    cache = make_cache()
    assert cache.get_many([]) == []
    cache.put_many([])
    assert cache.stats().entries == 0


def test_put_many_duplicates_last_wins(make_cache: CacheMaker) -> None:
    cache = make_cache(HashingEmbedder(dim=16))
    cache.put_many(
        [
            {"query": "Same", "response": "first"},
            {"query": "other", "response": "o"},
            {"query": "  same ", "response": "last"},
        ]
    )
    assert cache.stats().entries == 2
    hit = cache.get("same")
    assert hit is not None
    assert hit.response == "last"
    assert entry_for(cache, "same").query == "  same "


@pytest.mark.parametrize(
    "bad",
    [
        {"query": "q", "response": "x" * 200},
        {"query": "q", "response": "r", "metadata": {"s": {1, 2}}},
        {"query": "q", "response": "r", "embedding": [1.0, 0.0]},
        {"query": "q", "response": "r", "embedding": [math.nan, 0, 0, 0]},
        {"query": "q", "response": "r", "ttl": 0},
        {"query": "q"},
        {"query": "q", "response": "r", "unknown": 1},
    ],
)
def test_put_many_bad_item_stores_nothing(make_cache: CacheMaker, bad: dict[str, Any]) -> None:
    cache = make_cache(HashingEmbedder(dim=4), max_response_bytes=100)
    cache.put("existing", "kept")
    items = [{"query": "good one", "response": "ok"}, bad, {"query": "good two", "response": "ok"}]
    with pytest.raises((ValueError, EmbedderDimensionError)):
        cache.put_many(items)
    assert cache.stats().entries == 1
    assert cache.get("good one") is None


# -- maintenance and introspection ----------------------------------------------------


def test_vacuum_counts_expired(make_cache: CacheMaker, clock: FakeClock) -> None:
    events = Events()
    cache = make_cache(HashingEmbedder(dim=16), metrics_hook=events)
    for i in range(3):
        cache.put(f"a{i}", "r", namespace="a", ttl=10)
    for i in range(2):
        cache.put(f"b{i}", "r", namespace="b", ttl=10)
    cache.put("keep", "r", namespace="a")
    clock.advance(9)
    assert cache.vacuum() == 0
    clock.advance(1)
    assert cache.vacuum(namespace="a") == 3
    assert cache.stats(namespace="a").entries == 1
    assert cache.stats(namespace="b").entries == 2
    assert cache.vacuum() == 2
    assert cache.stats().expirations == 5
    assert events.of("expired") == [{"namespace": "a", "count": 3}, {"namespace": "b", "count": 2}]
    assert cache.get("a0", namespace="a") is None


@pytest.mark.parametrize("index_backend", ["numpy", "hnsw"])
def test_vacuum_without_compact_leaves_tombstones(
    make_cache: CacheMaker, clock: FakeClock, index_backend: str
) -> None:
    cache = make_cache(HashingEmbedder(dim=16), index_backend=index_backend)
    for i in range(40):
        cache.put(f"short {i}", "r", ttl=10)
    cache.put("kept", "r")
    full = cache.stats()
    assert (full.index_tombstone_count, full.entries) == (0, 41)
    clock.advance(10)
    assert cache.vacuum(compact=False) == 40
    after = cache.stats()
    assert (after.entries, after.index_tombstone_count) == (1, 40)
    # The expired rows still hold their memory; the estimate counts live rows only.
    assert after.index_memory_bytes == full.index_memory_bytes
    assert after.memory_bytes_estimate == 16 * 4
    assert cache.get("short 3") is None  # a tombstone is never served
    assert cache.compact() == 40
    compacted = cache.stats()
    assert compacted.index_tombstone_count == 0
    assert compacted.index_memory_bytes is not None and after.index_memory_bytes is not None
    assert compacted.index_memory_bytes < after.index_memory_bytes
    hit = cache.get("kept")
    assert hit is not None and hit.layer == "exact"


def test_vacuum_compacts_by_default(make_cache: CacheMaker, clock: FakeClock) -> None:
    cache = make_cache(HashingEmbedder(dim=16), index_backend="numpy")
    for i in range(20):
        cache.put(f"short {i}", "r", ttl=10)
    cache.put("kept", "r")
    clock.advance(10)
    assert cache.vacuum() == 20
    s = cache.stats()
    assert s.index_tombstone_count == 0
    assert s.index_memory_bytes == 16 * (16 * 4 + 8 + 1)  # one block, back at 16 rows


def test_compact_drops_tombstones(make_cache: CacheMaker) -> None:
    cache = make_cache(HashingEmbedder(dim=16))
    for i in range(5):
        cache.put(f"q{i}", "r")
    assert cache.delete("q0") is True
    assert cache.delete("q1") is True
    assert cache.stats().index_tombstone_count == 2
    assert cache.compact() == 2
    assert cache.stats().index_tombstone_count == 0
    assert cache.compact() == 0
    hit = cache.get("q3")
    assert hit is not None


def test_clear_and_clear_namespace(make_cache: CacheMaker) -> None:
    cache = make_cache(HashingEmbedder(dim=16))
    for ns, n in (("b", 2), ("a", 3), ("c", 1)):
        for i in range(n):
            cache.put(f"q{i}", "r", namespace=ns)
    assert cache.list_namespaces() == ["a", "b", "c"]
    assert cache.clear_namespace("a") == 3
    assert cache.clear_namespace("a") == 0
    assert cache.list_namespaces() == ["b", "c"]
    assert cache.get("q0", namespace="a") is None
    assert cache.clear() == 3
    assert cache.list_namespaces() == []
    assert cache.stats().entries == 0
    assert cache.get("q0", namespace="b") is None


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_health(make_cache: CacheMaker, clock: FakeClock, tmp_path: Path, backend: str) -> None:
    store: Store = MemoryStore() if backend == "memory" else SQLiteStore(str(tmp_path / "h.db"))
    cache = make_cache(HashingEmbedder(dim=16), store=store, index_backend="numpy")
    empty = cache.health()
    assert empty.oldest_entry_age_seconds is None
    assert empty.entries == 0
    cache.put("q1", "r", namespace="x")
    clock.advance(30)
    cache.put("q2", "r", namespace="y")
    h = cache.health()
    assert h.healthy is True
    assert h.integrity_ok is True
    assert h.embedder_fingerprint_match is True
    assert h.entries == 2
    assert h.namespaces == 2
    assert h.oldest_entry_age_seconds == 30.0
    assert h.index_backend == "numpy"
    assert h.store_backend == backend
    assert h.vector_dtype == "float32"
    assert h.multi_process_mode == "single"
    assert h.schema_version >= 1


def test_stats_fields(make_cache: CacheMaker) -> None:
    embedder = HashingEmbedder(dim=16)
    cache = make_cache(embedder, vector_dtype="float16")
    cache.put("q1", "r", namespace="x")
    cache.put("q2", "r", namespace="y")
    s = cache.stats()
    assert s.namespace is None
    assert s.entries == 2
    assert s.embedder_fingerprint == embedder.fingerprint
    assert s.vector_dtype == "float16"
    assert s.index_tombstone_count == 0
    # The estimate is 1.0's: live vectors x dim x bytes per element (float16: 2).
    assert s.memory_bytes_estimate == 2 * 16 * 2
    # The real size: each namespace's matrix starts with room for 16 rows, with ids
    # (8 bytes) and a live flag (1 byte) per row.
    assert s.index_memory_bytes == 2 * 16 * (16 * 2 + 8 + 1)
    sx = cache.stats(namespace="x")
    assert (sx.namespace, sx.entries, sx.memory_bytes_estimate) == ("x", 1, 32)


def test_dumps_loads_round_trip(make_cache: CacheMaker, tmp_path: Path, clock: FakeClock) -> None:
    embedder = HashingEmbedder(dim=32)
    cache = make_cache(embedder)
    cache.put("what is the capital of france", "Paris", metadata={"lang": "en"})
    cache.put("who wrote hamlet", "Shakespeare", namespace="lit", ttl=3600)
    cache.put("zero entry", "z", embedding=[0.0] * 32)
    dest = str(tmp_path / "dump.jsonl")
    assert cache.dumps(dest) == 3
    loaded = SemanticCache.loads(dest, str(tmp_path / "loaded.db"), embedder, clock=clock)
    try:

        def rows(c: SemanticCache) -> list[tuple[Any, ...]]:
            return [
                (
                    e.namespace,
                    e.query_hash,
                    e.query,
                    e.response,
                    e.embedding,
                    e.metadata,
                    e.created_at,
                    e.ttl,
                )
                for e in store_of(c).iter_all()
            ]

        assert rows(loaded) == rows(cache)
        hit = loaded.get("What is the capital city of France?")
        assert hit is not None
        assert (hit.layer, hit.response, hit.metadata) == ("semantic", "Paris", {"lang": "en"})
        exact = loaded.get("who wrote hamlet", namespace="lit")
        assert exact is not None
        assert exact.layer == "exact"
        assert loaded.list_namespaces() == ["default", "lit"]
    finally:
        loaded.close()
    with pytest.raises(EmbedderMismatchError):
        SemanticCache.loads(dest, str(tmp_path / "other.db"), TableEmbedder({}, dim=32))


@pytest.mark.parametrize("dtype", ["int8", "float16", "float32"])
def test_requantize_keeps_semantic_hits(make_cache: CacheMaker, dtype: str) -> None:
    cache = make_cache()
    cache.put("c95", "r95")
    cache.put("c50", "r50")
    cache.requantize(dtype)  # type: ignore[arg-type]
    assert cache.stats().vector_dtype == dtype
    assert cache.health().vector_dtype == dtype
    hit = cache.get("query")
    assert hit is not None
    assert hit.response == "r95"
    assert hit.similarity == pytest.approx(0.95, abs=0.02)
    with pytest.raises(QuantizationError):
        cache.requantize("float64")  # type: ignore[arg-type]
    # Stores keep float32 whatever the index holds.
    entry = entry_for(cache, "c95")
    assert np.allclose(np.frombuffer(entry.embedding, dtype="<f4"), at_cos(0.95), atol=1e-7)


@pytest.mark.parametrize("dtype", ["int8", "float16"])
def test_quantised_cache_from_start(make_cache: CacheMaker, dtype: str) -> None:
    cache = make_cache(vector_dtype=dtype)
    cache.put("c90", "r90")
    cache.put("far", "rfar")
    hit = cache.get("query")
    assert hit is not None
    assert hit.response == "r90"


def test_path_builds_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    with SemanticCache(str(path), HashingEmbedder(dim=16)) as cache:
        cache.put("q", "r")
        assert cache.health().store_backend == "sqlite"
    assert path.exists()
    assert path.stat().st_mode & 0o777 == 0o600
