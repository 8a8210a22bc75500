"""Bulk loads into a pgvector store: new rows go by COPY straight into the entries and
side tables; a key already stored (by an earlier load, an earlier chunk of this one, or
a concurrent writer) sends the rest of the load through the staging table's upsert."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
import pytest
from psycopg import sql

from mneme import StoreBackendError, StoredEntry
from mneme.stores.postgres import AsyncPostgresStore, PostgresStore
from mneme.stores.postgres.operations import load_rows
from pgvector_helpers import DIM, T0, admin, entry, fp, fresh, open_store, traced, unit, vectors

pytestmark = pytest.mark.backend("postgres")

CHUNK = load_rows(DIM, True)
T = TypeVar("T")


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    name = fresh()
    yield name
    with admin(postgres_dsn) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def batch(n: int, seed: int, prefix: str = "k", namespaces: int = 3) -> list[StoredEntry]:
    return [
        entry(f"{prefix}{i}", v, namespace=f"ns{i % namespaces}")
        for i, v in enumerate(vectors(n, seed))
    ]


def table(dsn: str, schema: str) -> dict[str, tuple[Any, ...]]:
    """Every entry by key: id, response, metadata, ttl, its side row's namespace,
    expiry and vector (None when it has no side row), and its embedding."""
    with admin(dsn) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT e.query_hash, e.id, e.response, e.metadata, e.ttl, v.namespace, "
                "v.expires_at, v.embedding::text, e.embedding FROM {s}.entries e "
                "LEFT JOIN {s}.entry_vectors v ON v.id = e.id"
            ).format(s=sql.Identifier(schema))
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def side_vector(text: str | None) -> np.ndarray[Any, np.dtype[np.float32]] | None:
    return None if text is None else np.array(text.strip("[]").split(","), dtype=np.float32)


def traced_load(store: PostgresStore, rows: list[StoredEntry]) -> tuple[list[int], str]:
    """The ids ``insert_many(rows)`` returned, and the protocol trace of the load."""
    conn = store._source._conn  # type: ignore[attr-defined]
    return traced(conn, lambda: store.insert_many(rows))


@pytest.fixture
def store(postgres_dsn: str, schema: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(postgres_dsn, schema=schema, use_pgvector=True)
    opened.open(fp(DIM), DIM)
    yield opened
    opened.close()


def test_new_rows_are_copied_with_their_side_rows(
    postgres_dsn: str, schema: str, store: PostgresStore
) -> None:
    rows = batch(CHUNK + 500, 1)
    rows[3] = replace(rows[3], ttl=600, metadata={"lang": "fr", "note": "déjà vu ✓"})
    rows[4] = replace(rows[4], embedding=bytes(4 * DIM))  # zero: no vector to index
    rows[5] = replace(rows[5], response="x" * 20_000)  # larger than a page
    ids, sent = traced_load(store, rows)
    # Straight into both tables: no staging table, no upsert.
    assert f'COPY "{schema}".entries (' in sent
    assert f'COPY "{schema}".entry_vectors (' in sent
    assert "mneme_stage" not in sent and "ON CONFLICT" not in sent
    assert ids == sorted(ids) and len(set(ids)) == len(rows)
    # Ids are taken for the rows there are, not in blocks that leave gaps.
    assert ids == list(range(1, len(rows) + 1))
    stored = table(postgres_dsn, schema)
    assert len(stored) == len(rows)
    for e, id_ in zip(rows, ids, strict=True):
        got = stored[e.query_hash]
        assert got[0] == id_ and got[1] == e.response and got[4] == e.namespace
        if e.query_hash != "k4":
            vec = side_vector(got[6])
            assert vec is not None
            assert np.allclose(vec, np.frombuffer(e.embedding, "<f4"), atol=1e-6)
    assert stored["k3"][2] == {"lang": "fr", "note": "déjà vu ✓"}
    assert stored["k3"][3:6] == (600, "ns0", T0 + 600)
    assert stored["k4"][4:7] == ("ns1", None, None)
    assert stored["k7"][5] is None
    top = store.search("ns2", np.frombuffer(rows[5].embedding, "<f4"), k=1, now=T0)
    assert [(e.query_hash, e.response) for e, _ in top] == [("k5", "x" * 20_000)]
    # The load changed the schema's version: other processes drop what they cached.
    assert store.read_version_counter() > 0


def test_a_stored_key_sends_the_rest_of_the_load_through_the_upsert(
    postgres_dsn: str, schema: str, store: PostgresStore
) -> None:
    first = batch(600, 2, prefix="a")
    first_ids = store.insert_many(first)
    # A first chunk of new keys (copied), then a chunk that rewrites 300 stored keys
    # with new answers and vectors among new ones.
    moved = [unit(v) for v in vectors(300, 3)]
    again = [
        replace(first[i], response=f"new {i}", embedding=moved[i].astype("<f4").tobytes())
        for i in range(300)
    ]
    second = batch(CHUNK, 4, prefix="b") + again + batch(400, 5, prefix="c")
    ids, sent = traced_load(store, second)
    assert sent.count(f'COPY "{schema}".entries (') == 2  # the second one failed
    assert sent.count(f'COPY "{schema}".entry_vectors (') == 1
    assert "COPY pg_temp.mneme_stage_v" in sent
    stored = table(postgres_dsn, schema)
    assert len(stored) == 600 + CHUNK + 400
    assert ids[CHUNK : CHUNK + 300] == first_ids[:300]  # rewritten in place
    for e, id_ in zip(second, ids, strict=True):
        got = stored[e.query_hash]
        assert got[0] == id_ and got[1] == e.response
        vec = side_vector(got[6])
        assert vec is not None
        assert np.allclose(vec, np.frombuffer(e.embedding, "<f4"), atol=1e-6)
    assert stored["a300"][1] == "answer a300"  # not in the second load
    top = store.search("ns0", moved[0], k=1, now=T0)
    assert [(e.query_hash, e.response) for e, _ in top] == [("a0", "new 0")]


def test_a_key_repeated_in_a_later_chunk_keeps_its_last_value(
    postgres_dsn: str, schema: str, store: PostgresStore
) -> None:
    rows = batch(CHUNK + 200, 6)
    rows[CHUNK + 100] = replace(rows[7], response="the later one")
    ids = store.insert_many(rows)
    assert ids[CHUNK + 100] == ids[7]
    stored = table(postgres_dsn, schema)
    assert len(stored) == CHUNK + 199
    assert stored["k7"][:2] == (ids[7], "the later one")


def test_an_expiry_beyond_bigint_fails_the_whole_load(
    postgres_dsn: str, schema: str, store: PostgresStore
) -> None:
    rows = batch(CHUNK + 200, 7)
    rows[-1] = replace(rows[-1], ttl=2**63 - 5)
    with pytest.raises(StoreBackendError, match="bigint out of range"):
        store.insert_many(rows)
    assert table(postgres_dsn, schema) == {}  # the copied first chunk is gone too
    assert store.count() == 0


def test_concurrent_loads_of_the_same_keys_agree_with_their_side_rows(
    postgres_dsn: str, schema: str
) -> None:
    n = CHUNK * 3
    loads = [batch(n, 8 + w) for w in range(3)]
    stores = []
    for _ in loads:
        store = PostgresStore(postgres_dsn, schema=schema, use_pgvector=True)
        store.open(fp(DIM), DIM)
        stores.append(store)
    errors: list[BaseException] = []
    start = threading.Barrier(len(loads))

    def run(store: PostgresStore, rows: list[StoredEntry]) -> None:
        try:
            start.wait()
            store.insert_many(rows)
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        threads = [
            threading.Thread(target=run, args=(s, rows))
            for s, rows in zip(stores, loads, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        stored = table(postgres_dsn, schema)
        assert len(stored) == n
        # Whichever load wrote a key last, its entry and side row came from the same one.
        by_load = [{e.query_hash: e for e in rows} for rows in loads]
        for key, got in stored.items():
            vec = side_vector(got[6])
            assert vec is not None
            matches = [
                w
                for w, rows in enumerate(by_load)
                if np.allclose(vec, np.frombuffer(rows[key].embedding, "<f4"), atol=1e-6)
            ]
            assert len(matches) == 1
            assert bytes(got[7]) == by_load[matches[0]][key].embedding
    finally:
        for store in stores:
            store.close()


def test_async_store_copies_and_falls_back_alike(postgres_dsn: str, schema: str) -> None:
    async def main() -> tuple[list[int], list[int]]:
        store = AsyncPostgresStore(postgres_dsn, schema=schema, use_pgvector=True)
        await store.open(fp(DIM), DIM)
        try:
            first = await store.insert_many(batch(CHUNK + 10, 9))
            rewritten = [replace(e, response="again") for e in batch(CHUNK + 10, 9)]
            second = await store.insert_many(rewritten)
            return first, second
        finally:
            await store.close()

    first, second = asyncio.run(main())
    assert first == second and len(set(first)) == CHUNK + 10
    stored = table(postgres_dsn, schema)
    assert {got[1] for got in stored.values()} == {"again"}
    assert all(side_vector(got[6]) is not None for got in stored.values())


def test_a_load_into_a_namespace_with_a_graph_is_searchable_at_once(
    postgres_dsn: str, schema: str
) -> None:
    stores: list[PostgresStore] = []
    try:
        store = open_store(stores, postgres_dsn, schema, exact_search_max_rows=100)
        store.insert_many(batch(300, 10, prefix="g", namespaces=1))
        assert store.build_vector_indexes() == ["ns0"]
        more = batch(CHUNK, 11, prefix="m", namespaces=1)
        store.insert_many(more)
        for e in more[::97]:
            top = store.search("ns0", np.frombuffer(e.embedding, "<f4"), k=1, now=T0)
            assert [x.query_hash for x, _ in top] == [e.query_hash]
    finally:
        for s in stores:
            s.close()
