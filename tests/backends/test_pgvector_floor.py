"""``min_similarity`` on a pgvector store's search and lookup: of the k nearest, only
the entries at or above it are read and sent, and the result says whether a
neighbour was left out below it (the cache's "below_threshold")."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from mneme import SemanticCache
from mneme.stores.postgres import PostgresStore
from mneme.testing import HashingEmbedder
from pgvector_helpers import DIM, T0, admin, entry, fp, fresh, open_store, traced, unit

pytestmark = pytest.mark.backend("pgvector")

BRANCHES = {"exact-scan": {"exact_search_max_rows": 1_000}, "index": {"exact_search_max_rows": 0}}


def blend(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], cos: float) -> Any:
    """A unit vector at cosine ``cos`` from ``a``, towards ``b`` (orthogonal to ``a``)."""
    return unit(cos * a + np.sqrt(1 - cos**2) * b)


def axes(seed: int) -> tuple[npt.NDArray[np.float32], ...]:
    """Three orthonormal vectors."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((DIM, 3)))
    return tuple(unit(q[:, i]) for i in range(3))


def three_neighbours(store: PostgresStore, target: npt.NDArray[np.float32]) -> None:
    """'close' (cosine 0.99), 'near' (0.9) and 'far' (0.5) from ``target``, plus one row
    in another namespace closer than all of them."""
    _, b, c = axes(7)
    store.insert_many(
        [
            entry("close", blend(target, b, 0.99)),
            entry("near", blend(target, c, 0.9)),
            entry("far", blend(target, b, 0.5)),
            entry("elsewhere", target, namespace="other"),
        ]
    )
    store.build_vector_indexes()


@pytest.fixture(params=list(BRANCHES))
def filled(
    request: pytest.FixtureRequest, postgres_dsn: str, stores: list[PostgresStore]
) -> tuple[PostgresStore, npt.NDArray[np.float32]]:
    store = open_store(stores, postgres_dsn, fresh(), auto_index=False, **BRANCHES[request.param])
    target = axes(7)[0]
    three_neighbours(store, target)
    return store, target


def keys(found: list[Any]) -> list[str]:
    return [e.query_hash for e, _ in found]


def test_neighbours_below_the_floor_are_left_out_and_reported(
    filled: tuple[PostgresStore, npt.NDArray[np.float32]],
) -> None:
    store, target = filled
    everything = store.search("default", target, k=3, now=T0)
    assert keys(everything) == ["close", "near", "far"]
    assert not everything.below
    sims = [s for _, s in everything]
    assert sims == pytest.approx([0.99, 0.9, 0.5], abs=1e-4)

    usable = store.search("default", target, k=3, now=T0, min_similarity=0.85)
    assert list(usable) == everything[:2]  # the same entries, every column read
    assert usable.below

    # At the floor exactly is usable: the test is the one the cache makes (>=).
    at = store.search("default", target, k=3, now=T0, min_similarity=sims[1])
    assert keys(at) == ["close", "near"]
    assert at.below

    # Nothing below among the k nearest: not reported, even though 'far' is below.
    two = store.search("default", target, k=2, now=T0, min_similarity=0.85)
    assert keys(two) == ["close", "near"]
    assert not two.below

    none = store.search("default", target, k=3, now=T0, min_similarity=0.995)
    assert list(none) == []
    assert none.below
    assert not store.search("empty", target, k=3, now=T0, min_similarity=0.5).below


def test_lookup_with_a_floor(filled: tuple[PostgresStore, npt.NDArray[np.float32]]) -> None:
    store, target = filled
    exact, found = store.lookup("default", "nothing", target, k=3, now=T0, min_similarity=0.85)
    assert exact is None
    assert keys(found) == ["close", "near"]
    assert found.below
    exact, everything = store.lookup("default", "nothing", target, k=3, now=T0)
    assert keys(everything) == ["close", "near", "far"]
    assert not everything.below
    assert list(found) == everything[:2]
    # A live exact entry answers alone: the search does not run, so nothing is below.
    exact, found = store.lookup("default", "far", target, k=3, now=T0, min_similarity=0.85)
    assert exact is not None
    assert (exact.query_hash, exact.response) == ("far", "answer far")
    assert list(found) == []
    assert not found.below


@pytest.mark.parametrize("call", ["search", "lookup"])
def test_entries_below_the_floor_are_not_sent(postgres_dsn: str, pg_schema: str, call: str) -> None:
    with admin(postgres_dsn) as conn:
        store = PostgresStore(connection=conn, schema=pg_schema, use_pgvector=True)
        store.open(fp(DIM), DIM)
        target = axes(7)[0]
        three_neighbours(store, target)

        def run(floor: float | None) -> list[Any]:
            if call == "search":
                return store.search("default", target, k=3, now=T0, min_similarity=floor)
            return store.lookup("default", "x", target, k=3, now=T0, min_similarity=floor)[1]

        found, sent = traced(conn, lambda: run(0.85))
        everything, all_sent = traced(conn, lambda: run(None))
        store.close()
    assert keys(found) == ["close", "near"]
    assert keys(everything) == ["close", "near", "far"]
    assert "answer near" in sent
    assert "answer far" not in sent
    assert "answer far" in all_sent


def test_cache_misses_below_its_threshold_through_both_calls(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    """With and without an explicit embedding (one statement for both layers, or the
    search after the exact lookup), a neighbour below the threshold ends the lookup as
    "below_threshold", and one above it is served."""
    events: list[tuple[str, Any]] = []
    store = PostgresStore(postgres_dsn, schema=fresh(), use_pgvector=True)
    embedder = HashingEmbedder(DIM)
    cache = SemanticCache(
        store=store,
        embedder=embedder,
        metrics_hook=lambda event, fields: events.append((event, fields.get("reason"))),
    )
    stores.append(store)
    target = unit(np.asarray(embedder.embed("what is the capital of france"), dtype=np.float32))
    other = unit(np.random.default_rng(3).standard_normal(DIM))
    other = unit(other - float(other @ target) * target)
    cache.put("stored far", "far answer", embedding=blend(target, other, 0.5))
    assert cache.get("what is the capital of france") is None
    assert cache.get("another text", embedding=target) is None
    assert events == [("miss", "below_threshold"), ("miss", "below_threshold")]
    cache.put("stored near", "near answer", embedding=blend(target, other, 0.97))
    hit = cache.get("another text", embedding=target)
    assert hit is not None
    assert hit.response == "near answer"
    assert hit.similarity == pytest.approx(0.97, abs=1e-4)
    hit = cache.get("what is the capital of france")
    assert hit is not None
    assert hit.response == "near answer"
    cache.close()


def test_the_async_store_takes_the_same_floor(postgres_dsn: str, pg_schema: str) -> None:
    from mneme.stores.postgres.async_store import AsyncPostgresStore

    target = axes(7)[0]
    with admin(postgres_dsn) as conn:
        sync = PostgresStore(connection=conn, schema=pg_schema, use_pgvector=True)
        sync.open(fp(DIM), DIM)
        three_neighbours(sync, target)
        sync.close()

    async def run() -> tuple[Any, ...]:
        store = AsyncPostgresStore(postgres_dsn, schema=pg_schema, use_pgvector=True)
        await store.open(fp(DIM), DIM)
        try:
            found = await store.search("default", target, k=3, now=T0, min_similarity=0.85)
            _, looked = await store.lookup("default", "x", target, k=3, now=T0, min_similarity=0.95)
            return found, looked
        finally:
            await store.close()

    found, looked = asyncio.run(run())
    assert keys(found) == ["close", "near"]
    assert found.below
    assert keys(looked) == ["close"]
    assert looked.below
