"""Single writes into a namespace with a graph: the row is searchable at once, stays out
of the graph (no HNSW insertion on the write's path) and is moved in by a background
pass, one per schema, that also picks up rows a stopped process left behind."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import pytest
from psycopg import sql

from mneme.stores.postgres import AsyncPostgresStore, PostgresStore
from mneme.stores.postgres import operations as pg_operations
from mneme.stores.postgres.graphs import fresh_lock_key
from mneme.stores.postgres.vector import graph_name
from pgvector_helpers import DIM, T0, admin, entry, fp, fresh, open_store, unit, vectors

pytestmark = pytest.mark.backend("postgres")


def graphed_store(stores: list[PostgresStore], dsn: str, schema: str, **options: Any) -> Any:
    """A store whose namespace "big" has a valid graph and "small" none; the data."""
    store = open_store(stores, dsn, schema, exact_search_max_rows=100, **options)
    data = vectors(300, 11)
    store.insert_many([entry(f"b{i}", v, "big") for i, v in enumerate(data)])
    store.insert_many([entry(f"s{i}", v, "small") for i, v in enumerate(vectors(40, 12))])
    assert store.build_vector_indexes() == ["big"]
    return store, data


def fresh_of(dsn: str, schema: str) -> dict[str, bool]:
    with admin(dsn) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT e.query_hash, v.fresh FROM {s}.entry_vectors v "
                "JOIN {s}.entries e ON e.id = v.id"
            ).format(s=sql.Identifier(schema))
        ).fetchall()
    return {str(h): bool(f) for h, f in rows}


def wait_until_moved(dsn: str, schema: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while any(fresh_of(dsn, schema).values()):
        assert time.monotonic() < deadline, "fresh rows were not moved into their graphs"
        time.sleep(0.1)


def walk_finds(dsn: str, schema: str, namespace: str, q: npt.NDArray[np.float32]) -> str:
    """The nearest row of ``namespace``'s graph alone (the planner made to walk it; the
    graph holds the vectors in half precision)."""
    from pgvector.psycopg import register_vector

    with admin(dsn) as conn:
        register_vector(conn)
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_bitmapscan = off")
        conn.execute("SET enable_indexscan = on")
        query = sql.SQL(
            "SELECT e.query_hash FROM {s}.entry_vectors v JOIN {s}.entries e ON e.id = v.id "
            "WHERE v.id = (SELECT id FROM {s}.entry_vectors WHERE namespace = %s AND NOT fresh "
            "ORDER BY embedding::halfvec({d}) <=> %s::halfvec({d}) LIMIT 1)"
        ).format(s=sql.Identifier(schema), d=sql.Literal(len(q)))
        plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + query, [namespace, q]))
        assert graph_name(namespace) in plan
        row = conn.execute(query, [namespace, q]).fetchone()
    assert row is not None
    return str(row[0])


class HeldPass:
    """Holds the schema's fresh-row lock from another session: the pass waits."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.conn = admin(dsn)
        self.key = fresh_lock_key(schema)
        self.conn.execute("SELECT pg_advisory_lock(%s)", [self.key])

    def release(self) -> None:
        self.conn.execute("SELECT pg_advisory_unlock(%s)", [self.key])
        self.conn.close()


def test_a_write_is_searchable_at_once_and_moved_into_the_graph_after(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    schema = fresh()
    store, data = graphed_store(stores, postgres_dsn, schema)
    new = unit(np.ones(DIM))
    held = HeldPass(postgres_dsn, schema)
    try:
        store.insert(entry("new", new, "big"))
        store.insert(entry("new-small", new, "small"))
        flags = fresh_of(postgres_dsn, schema)
        # Out of the graph until the pass runs; a namespace without a graph has nothing
        # to wait for.
        assert (flags["new"], flags["new-small"], flags["b7"]) == (True, False, False)
        hits = store.search("big", new, k=2, now=T0)
        assert hits[0][0].query_hash == "new" and hits[0][1] == pytest.approx(1.0, abs=1e-5)
        assert hits[1][0].query_hash != "new"
        assert store.search("big", data[7], k=1, now=T0)[0][0].query_hash == "b7"
        assert walk_finds(postgres_dsn, schema, "big", new) != "new"  # not in the graph
        found, candidates = store.lookup("big", "no-such-hash", new, k=1, now=T0)
        assert found is None and candidates[0][0].query_hash == "new"
        status = {g.namespace: (g.state, g.rows, g.fresh_rows) for g in store.vector_index_status()}
        assert status == {"big": ("ready", 301, 1), "small": ("exact", 41, 0)}
    finally:
        held.release()
    wait_until_moved(postgres_dsn, schema)
    assert walk_finds(postgres_dsn, schema, "big", new) == "new"  # now in the graph
    assert [g.fresh_rows for g in store.vector_index_status()] == [0, 0]
    hits = store.search("big", new, k=2, now=T0)
    assert [h[0].query_hash for h in hits][:1] == ["new"]
    assert hits[1][0].query_hash != "new"  # found once, not twice


def test_a_rewrite_keeps_its_place_unless_its_vector_changes(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    schema = fresh()
    store, data = graphed_store(stores, postgres_dsn, schema)
    store.insert(entry("new", data[0], "big"))
    wait_until_moved(postgres_dsn, schema)
    held = HeldPass(postgres_dsn, schema)
    try:
        store.insert(entry("new", data[0], "big"))  # same vector: stays in the graph
        assert fresh_of(postgres_dsn, schema)["new"] is False
        moved = unit(np.arange(DIM))
        store.insert(entry("new", moved, "big"))  # a new vector: out until moved
        assert fresh_of(postgres_dsn, schema)["new"] is True
        assert store.search("big", moved, k=1, now=T0)[0][0].query_hash == "new"
    finally:
        held.release()
    wait_until_moved(postgres_dsn, schema)
    assert walk_finds(postgres_dsn, schema, "big", moved) == "new"


def test_rows_a_stopped_store_left_fresh_are_moved_by_the_next_one(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    schema = fresh()
    first, _ = graphed_store(stores, postgres_dsn, schema)
    held = HeldPass(postgres_dsn, schema)
    try:
        for i, v in enumerate(vectors(5, 13)):
            first.insert(entry(f"late{i}", v, "big"))
        first.close()  # its pass stops with the store
    finally:
        held.release()
    time.sleep(0.5)
    assert sum(fresh_of(postgres_dsn, schema).values()) == 5
    second = open_store(stores, postgres_dsn, schema, exact_search_max_rows=100)
    wait_until_moved(postgres_dsn, schema)
    assert second.search("big", vectors(5, 13)[3], k=1, now=T0)[0][0].query_hash == "late3"


def test_without_a_pass_of_its_own_a_write_goes_straight_into_the_graph(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    schema = fresh()
    graphed_store(stores, postgres_dsn, schema)
    auto_off = open_store(stores, postgres_dsn, schema, auto_index=False)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        borrowed = PostgresStore(connection=conn, schema=schema, use_pgvector=True)
        borrowed.open(fp(DIM), DIM)
        for key, store in (("auto-off", auto_off), ("borrowed", borrowed)):
            store.insert(entry(key, unit(np.arange(DIM) % 3), "big"))
            assert fresh_of(postgres_dsn, schema)[key] is False
            assert walk_finds(postgres_dsn, schema, "big", unit(np.arange(DIM) % 3)) == key
            store.delete_many([store.get_by_hash("big", key).id])  # type: ignore[union-attr]
        borrowed.close()


def test_a_long_backlog_makes_writes_pay_their_graph_insertion(
    postgres_dsn: str, stores: list[PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_operations, "FRESH_BACKLOG_MAX", 2)
    schema = fresh()
    store, _ = graphed_store(stores, postgres_dsn, schema)
    held = HeldPass(postgres_dsn, schema)
    try:
        for i, v in enumerate(vectors(4, 14)):
            store.insert(entry(f"w{i}", v, "big"))
        flags = fresh_of(postgres_dsn, schema)
        assert [flags[f"w{i}"] for i in range(4)] == [True, True, False, False]
    finally:
        held.release()
    wait_until_moved(postgres_dsn, schema)
    deadline = time.monotonic() + 30
    while store._fresh_backlog:  # the pass found nothing left: the count starts over
        assert time.monotonic() < deadline
        time.sleep(0.05)
    held = HeldPass(postgres_dsn, schema)
    try:
        store.insert(entry("after", unit(np.arange(DIM)), "big"))
        assert fresh_of(postgres_dsn, schema)["after"] is True
    finally:
        held.release()


def test_a_side_table_of_an_earlier_version_gets_the_column_at_open(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    schema = fresh()
    first = open_store(stores, postgres_dsn, schema, exact_search_max_rows=100)
    first.insert(entry("old", unit(np.arange(DIM)), "small"))
    first.close()
    s = sql.Identifier(schema)
    with admin(postgres_dsn) as conn:  # the side table as the earlier version made it
        conn.execute(sql.SQL("ALTER TABLE {}.entry_vectors DROP COLUMN fresh").format(s))
    store = open_store(stores, postgres_dsn, schema, exact_search_max_rows=100)
    store.insert(entry("new", unit(np.ones(DIM)), "small"))
    assert fresh_of(postgres_dsn, schema) == {"old": False, "new": False}
    with admin(postgres_dsn) as conn:
        (indexed,) = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = %s "
            "AND indexname = 'idx_entry_vectors_fresh'",
            [schema],
        ).fetchone() or (0,)
    assert indexed == 1
    assert store.search("small", unit(np.ones(DIM)), k=1, now=T0)[0][0].query_hash == "new"


def test_the_async_store_moves_fresh_rows_too(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    import asyncio

    schema = fresh()
    sync_store, _ = graphed_store(stores, postgres_dsn, schema)
    sync_store.close()
    new = unit(np.ones(DIM))

    async def main() -> None:
        store = AsyncPostgresStore(postgres_dsn, schema=schema, use_pgvector=True)
        await store.open(fp(DIM), DIM)
        try:
            held = HeldPass(postgres_dsn, schema)
            try:
                await store.insert(entry("new", new, "big"))
                assert fresh_of(postgres_dsn, schema)["new"] is True
                hits = await store.search("big", new, k=1, now=T0)
                assert hits[0][0].query_hash == "new"
            finally:
                held.release()
            deadline = time.monotonic() + 60
            while fresh_of(postgres_dsn, schema)["new"]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        finally:
            await store.close()

    asyncio.run(main())
    assert walk_finds(postgres_dsn, schema, "big", new) == "new"
