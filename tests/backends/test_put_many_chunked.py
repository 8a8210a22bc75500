"""put_many on a store that writes a batch while the cache checks its next chunk
(PostgresStore opened from a DSN): a bad item anywhere still leaves nothing stored and
raises its own error, duplicates keep the last, and the in-process index and progress
see every chunk. Sync and async caches, BYTEA and pgvector."""

from __future__ import annotations

import asyncio
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import pytest
from psycopg import sql

from mneme import AsyncSemanticCache, EmbedderDimensionError, SemanticCache, StoredEntry
from mneme.stores.postgres.feed import ChunkFeed
from mneme.stores.postgres.store import PostgresStore
from mneme.testing import HashingEmbedder

pytestmark = pytest.mark.backend("postgres")

DIM = 32
N = 3_500  # four chunks of the cache's checks and of the store's COPY


class Cache:
    """One facade over both caches: every call runs on the sync cache, or on the async
    cache in one event loop."""

    def __init__(self, kind: str, store: PostgresStore) -> None:
        self.kind = kind
        if kind == "sync":
            self.cache: Any = SemanticCache(store=store, embedder=HashingEmbedder(DIM)).open()
        else:
            self.runner = asyncio.Runner()
            self.cache = AsyncSemanticCache(store=store, embedder=HashingEmbedder(DIM))
            self.runner.run(self.cache.open())

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.cache, name)
        if self.kind == "sync":
            return method
        return lambda *args, **kwargs: self.runner.run(method(*args, **kwargs))

    def shut(self) -> None:
        self.close()
        if self.kind == "async":
            self.runner.close()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[False, True], ids=["bytea", "pgvector"])
def cache(
    request: pytest.FixtureRequest, kind: str, postgres_dsn: str, pg_schema: str
) -> Iterator[Cache]:
    """A cache on a store of its own schema (BYTEA or pgvector), closed afterwards."""
    made = Cache(kind, PostgresStore(postgres_dsn, schema=pg_schema, use_pgvector=request.param))
    try:
        yield made
    finally:
        made.shut()


def unit_rows(n: int, seed: int) -> npt.NDArray[np.float32]:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    unit: npt.NDArray[np.float32] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit


def items(n: int, seed: int = 1) -> list[dict[str, Any]]:
    vectors = unit_rows(n, seed)
    return [
        {
            "query": f"question {i}",
            "response": f"answer {i}",
            "embedding": vectors[i],
            "metadata": {"i": i},
            "namespace": f"ns{i % 3}",
        }
        for i in range(n)
    ]


def stored_count(dsn: str, schema: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.entries").format(sql.Identifier(schema))
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("position", "change", "error", "words"),
    [
        (2_600, {"embedding": np.ones(DIM + 1)}, EmbedderDimensionError, "dim"),
        (3_499, {"metadata": {"bad": {1, 2}}}, ValueError, "JSON"),
        (1_000, {"ttl": -1}, ValueError, "ttl"),
    ],
)
def test_a_bad_item_in_a_later_chunk_raises_its_own_error_and_stores_nothing(
    cache: Cache,
    postgres_dsn: str,
    pg_schema: str,
    position: int,
    change: dict[str, Any],
    error: type[Exception],
    words: str,
) -> None:
    cache.put("already here", "kept", embedding=unit_rows(1, 9)[0])
    batch = items(N)
    batch[position] = {**batch[position], **change}
    with pytest.raises(error, match=words):
        cache.put_many(batch)
    assert stored_count(postgres_dsn, pg_schema) == 1
    assert cache.get("question 0", namespace="ns0") is None
    hit = cache.get("already here")
    assert hit is not None and hit.response == "kept"
    cache.put_many(batch[:position])  # the store and its connection still work
    assert stored_count(postgres_dsn, pg_schema) == 1 + position


def test_a_missing_key_names_its_place_in_the_whole_batch(cache: Cache) -> None:
    batch = items(N)
    batch[2_345] = {"query": "no response here", "embedding": batch[2_345]["embedding"]}
    with pytest.raises(ValueError, match="put_many item 2345 needs keys"):
        cache.put_many(batch)


def test_duplicates_across_chunks_keep_the_last_and_search_finds_it(
    cache: Cache, postgres_dsn: str, pg_schema: str
) -> None:
    """The same question in the first and the fourth chunk: the later answer and its
    vector are what Layer 1 and Layer 2 return (the in-process index, on BYTEA, holds
    the later vector under the one id)."""
    batch = items(N)
    first, later = batch[4], dict(batch[3_004])
    later.update(query=first["query"], namespace=first["namespace"], response="the later one")
    batch[3_004] = later
    cache.put_many(batch)
    assert stored_count(postgres_dsn, pg_schema) == N - 1
    exact = cache.get(first["query"], namespace=first["namespace"])
    assert exact is not None and exact.response == "the later one"
    asked = first["query"] + "?"  # not the stored text: Layer 2 answers
    semantic = cache.get(asked, embedding=later["embedding"], namespace=later["namespace"])
    assert semantic is not None and semantic.layer == "semantic"
    assert semantic.response == "the later one"
    assert cache.get(asked, embedding=first["embedding"], namespace=first["namespace"]) is None
    other = batch[2_222]
    hit = cache.get("question 2222?", embedding=other["embedding"], namespace=other["namespace"])
    assert hit is not None and hit.response == "answer 2222" and hit.metadata == {"i": 2222}


def test_progress_hears_of_every_chunk(cache: Cache) -> None:
    heard: list[tuple[str, int, int | None]] = []
    cache.put_many(items(N), progress=lambda p: heard.append((p.task, p.done, p.total)))
    assert heard == [("write", done, N) for done in (0, 1_000, 2_000, 3_000, N)]


def test_a_batch_that_needs_the_embedder_is_checked_whole_first(
    cache: Cache, postgres_dsn: str, pg_schema: str
) -> None:
    """Items without an embedding are embedded (in the cache) before anything is
    written: progress hears of the task "embed" first, and all rows are stored."""
    batch = items(1_500)
    for item in batch[::2]:
        del item["embedding"]
    heard: list[str] = []
    cache.put_many(batch, progress=lambda p: heard.append(p.task))
    assert heard[0] == "embed" and heard[-1] == "write"
    assert stored_count(postgres_dsn, pg_schema) == 1_500


def entry(key: str, namespace: str = "default") -> StoredEntry:
    return StoredEntry(
        id=0,
        namespace=namespace,
        query_hash=key,
        query=key,
        response=f"response {key}",
        embedding=unit_rows(1, zlib.crc32(key.encode()))[0].tobytes(),
        metadata=None,
        created_at=1,
        last_accessed_at=1,
        ttl=None,
        access_count=0,
    )


def test_the_store_takes_chunks_lazily_and_returns_ids_in_order(
    postgres_dsn: str, pg_schema: str
) -> None:
    store = PostgresStore(postgres_dsn, schema=pg_schema)
    store.open("fingerprint", DIM)
    try:
        taken: list[int] = []

        def chunks() -> Iterator[list[StoredEntry]]:
            for c in range(3):
                taken.append(c)
                yield [entry(f"k{c}-{i}") for i in range(700)] + [entry("shared")]

        ids = store.insert_chunks(chunks())
        assert taken == [0, 1, 2]
        assert len(ids) == 3 * 701 and len(set(ids)) == 3 * 700 + 1
        assert ids[700] == ids[1401] == ids[2102]  # "shared", written three times
        assert store.count() == 2_101

        def failing() -> Iterator[list[StoredEntry]]:
            yield [entry(f"new-{i}") for i in range(1_000)]
            raise RuntimeError("the caller's own failure")

        with pytest.raises(RuntimeError, match="the caller's own failure"):
            store.insert_chunks(failing())
        assert store.count() == 2_101 and store.get_by_hash("default", "new-0") is None
    finally:
        store.close()


def _active_copy(watcher: psycopg.Connection[Any], like: str) -> str | None:
    """The statement another session is running now, if it matches ``like``."""
    row = watcher.execute(
        "SELECT query FROM pg_stat_activity WHERE state = 'active' "
        "AND pid <> pg_backend_pid() AND query LIKE %s",
        [like],
    ).fetchone()
    return None if row is None else str(row[0])


def test_a_pgvector_store_makes_the_next_chunk_while_the_server_stores_entries(
    postgres_dsn: str, pg_schema: str
) -> None:
    store = PostgresStore(postgres_dsn, schema=pg_schema, use_pgvector=True)
    store.open("fingerprint", DIM)
    running: list[str | None] = []  # the store's COPY into entries, as each chunk is made
    try:
        with psycopg.connect(postgres_dsn, autocommit=True) as watcher:

            def chunks() -> Iterator[list[StoredEntry]]:
                for c in range(3):
                    running.append(_active_copy(watcher, f"COPY%{pg_schema}%entries%"))
                    yield [entry(f"k{c}-{i}") for i in range(1_000)]

            ids = store.insert_chunks(chunks())
        assert len(set(ids)) == 3_000 and store.count() == 3_000
        # The first chunk is made before any COPY; each later one during the COPY of
        # the entries of the chunk before it.
        assert running[0] is None
        assert running[1] is not None and running[2] is not None
        assert "entry_vectors" not in running[1]
    finally:
        store.close()


def test_a_pgvector_store_encodes_the_next_chunk_while_the_server_stores_side_rows(
    postgres_dsn: str, pg_schema: str
) -> None:
    store = PostgresStore(postgres_dsn, schema=pg_schema, use_pgvector=True)
    store.open("fingerprint", DIM)
    running: list[str | None] = []  # the store's COPY, when a metadata value is encoded
    try:
        with psycopg.connect(postgres_dsn, autocommit=True) as watcher:

            class Probe(float):
                """A float that notes which COPY of the store runs when it is written."""

                def __repr__(self) -> str:
                    running.append(_active_copy(watcher, f"COPY%{pg_schema}%"))
                    return float.__repr__(self)

            def chunk(c: int) -> list[StoredEntry]:
                rows = [entry(f"k{c}-{i}") for i in range(1_000)]
                rows[0] = replace(rows[0], metadata={"score": Probe(0.5)})
                return rows

            store.insert_chunks(chunk(c) for c in range(3))
        # The first chunk's metadata is written before any COPY; each later one's while
        # the server stores the side rows of the chunk before.
        assert running[0] is None
        assert all(q is not None and "entry_vectors" in q for q in running[1:])
        assert len(running) == 3
        got = store.get_by_hash("default", "k2-0")
        assert got is not None and got.metadata == {"score": 0.5}
    finally:
        store.close()


def test_a_feed_is_read_again_from_its_start_without_taking_twice() -> None:
    pulled: list[int] = []

    def source() -> Iterator[list[StoredEntry]]:
        for c in range(3):
            pulled.append(c)
            yield [entry(f"{c}-{i}") for i in range(400)] + [entry("same"), entry("same")]

    feed = ChunkFeed(source(), 500)
    first = [[e.query_hash for e in chunk] for chunk in feed]
    again = [[e.query_hash for e in chunk] for chunk in feed]
    assert first == again and pulled == [0, 1, 2]
    # Chunks of 500 taken in order, each without its second "same".
    assert [len(c) for c in first] == [499, 499, 205]
    assert [c.count("same") for c in first] == [1, 1, 1]
    assert len(feed.entries) == 3 * 402


@pytest.mark.parametrize("server", ["postgres 18", "postgres 15"])
def test_a_store_without_pgvector_loads_through_copy_too(
    request: pytest.FixtureRequest, server: str
) -> None:
    """A BYTEA store opened from a DSN has its own connection, so its bulk loads go
    through the session staging table as a pgvector store's do, on a server without
    pgvector as well; every value comes back as written."""
    dsn = request.getfixturevalue("postgres_dsn" if server == "postgres 18" else "pg15_dsn")
    schema = request.getfixturevalue("pg_schema" if server == "postgres 18" else "pg15_schema")
    store = PostgresStore(dsn, schema=schema, use_pgvector=False)
    cache = SemanticCache(store=store, embedder=HashingEmbedder(DIM)).open()
    try:
        batch = items(N)
        for i, item in enumerate(batch):
            item["metadata"] = None if i % 3 else {"i": i, "s": "ünï \\N"}
            item["ttl"] = None if i % 2 else 3_600 + i
        conn = store._source._conn  # type: ignore[attr-defined]
        with tempfile.TemporaryFile() as trace:
            conn.pgconn.trace(trace.fileno())
            try:
                cache.put_many(batch)
            finally:
                conn.pgconn.untrace()
            trace.seek(0)
            sent = trace.read().decode("utf-8", "replace")
        assert "COPY pg_temp.mneme_stage" in sent and "unnest" not in sent
        assert stored_count(dsn, schema) == N
        for i in (0, 1, 2, 1_999, 3_001, N - 1):
            got = store.get_by_hash(f"ns{i % 3}", cache._state.options.key(f"question {i}")[1])
            assert got is not None and got.response == f"answer {i}"
            assert got.metadata == (None if i % 3 else {"i": i, "s": "ünï \\N"})
            assert got.ttl == (None if i % 2 else 3_600 + i)
            np.testing.assert_allclose(
                np.frombuffer(got.embedding, dtype="<f4"), batch[i]["embedding"], rtol=1e-6
            )
    finally:
        cache.close()
