"""AsyncPostgresStore: the async cache's native Postgres path, on the real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from conftest import EMBEDDER
from mneme import AsyncSemanticCache, StoreBackendError
from mneme.stores.postgres.async_store import AsyncPostgresStore
from mneme.stores.postgres.store import PostgresStore
from mneme.testing import HashingEmbedder

pytestmark = pytest.mark.backend("postgres")


class AsyncHashing:
    """HashingEmbedder with a coroutine embed, so no step needs a worker thread."""

    def __init__(self, dim: int) -> None:
        self._inner = HashingEmbedder(dim)
        self.dim = dim
        self.fingerprint = self._inner.fingerprint

    async def embed(self, text: str) -> npt.NDArray[np.float32]:
        return self._inner.embed(text)


@pytest.fixture
def no_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a worker thread was used for store or embedder work")

    monkeypatch.setattr(asyncio, "to_thread", refuse)
    yield


@pytest.mark.parametrize("use_pgvector", [False, True])
def test_async_cache_on_postgres_needs_no_thread(
    postgres_dsn: str, pg_schema: str, no_threads: None, use_pgvector: bool
) -> None:
    async def scenario() -> None:
        store = PostgresStore(postgres_dsn, schema=pg_schema, use_pgvector=use_pgvector)
        async with AsyncSemanticCache(store=store, embedder=AsyncHashing(64)) as cache:
            assert type(cache._store) is AsyncPostgresStore
            await cache.put("What is the capital of France?", "Paris", metadata={"n": 1e16})
            exact = await cache.get("what is the capital of france?")
            assert exact is not None and exact.layer == "exact"
            assert exact.metadata == {"n": 1e16} and isinstance(exact.metadata["n"], float)
            near = await cache.get("What is the capital city of France?")
            assert near is not None and near.layer == "semantic" and near.response == "Paris"
            assert await cache.get("how to bake bread") is None
            health = await cache.health()
            assert health.index_backend == ("pgvector" if use_pgvector else "numpy")
            stats = await cache.stats()
            assert (stats.hits_exact, stats.hits_semantic, stats.misses) == (1, 1, 1)

    asyncio.run(scenario())


def test_pool_and_caller_connection_are_borrowed_not_closed(
    postgres_dsn: str, pg_schema: str
) -> None:
    async def scenario() -> None:
        pool = AsyncConnectionPool(postgres_dsn, min_size=1, max_size=2, open=False)
        await pool.open()
        try:
            store = AsyncPostgresStore(pool=pool, schema=pg_schema, use_pgvector=True)
            await store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
            async with AsyncSemanticCache(store=store, embedder=AsyncHashing(64)) as cache:
                for i in range(20):
                    await cache.put(f"question {i}", f"answer {i}")
                hits = await asyncio.gather(*(cache.get(f"question {i}") for i in range(20)))
                assert [h.response if h else None for h in hits] == [
                    f"answer {i}" for i in range(20)
                ]
            stats = pool.get_stats()
            assert stats.get("requests_waiting", 0) == 0
            assert stats["pool_available"] == stats["pool_size"]
            async with pool.connection() as conn:  # the pool outlives the store
                row = await (await conn.execute("SELECT 1")).fetchone()
                assert row == (1,)
        finally:
            await pool.close()

        conn = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
        try:
            store = AsyncPostgresStore(connection=conn, schema=pg_schema)
            await store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
            assert await store.count() == 20
            await store.close()
            assert not conn.closed
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_killed_backend_is_an_error_then_the_store_reconnects(
    postgres_dsn: str, pg_schema: str
) -> None:
    async def scenario() -> None:
        store = AsyncPostgresStore(postgres_dsn, schema=pg_schema)
        await store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
        try:
            before = await store.read_version_counter()
            async with store._source.borrow() as conn:  # the store's own connection
                pid = conn.info.backend_pid
            with psycopg.connect(postgres_dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            with pytest.raises(StoreBackendError) as caught:
                await store.read_version_counter()
            assert isinstance(caught.value.__cause__, psycopg.Error)
            assert await store.read_version_counter() == before
        finally:
            await store.close()

    asyncio.run(scenario())


def test_sync_only_sources_fall_back_to_threads(postgres_dsn: str, pg_schema: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        store = PostgresStore(connection=conn, schema=pg_schema)
        assert store.to_async() is None

        async def scenario() -> None:
            async with AsyncSemanticCache(store=store, embedder=HashingEmbedder(64)) as cache:
                assert cache._store is store
                await cache.put("q", "r")
                hit = await cache.get("q")
                assert hit is not None and hit.response == "r"

        asyncio.run(scenario())
        assert not conn.closed


def test_async_store_validates_like_the_sync_one() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        AsyncPostgresStore()
    with pytest.raises(ValueError, match="alphanumeric"):
        AsyncPostgresStore("postgresql://x", schema="a; DROP")
