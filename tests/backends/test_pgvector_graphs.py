"""One HNSW graph per large namespace: built in the background or on demand, never
blocking writers, redone after a build that died, and the layout of earlier versions
retired once it is no longer needed. Also the bulk-load (COPY) path and the search's
per-session settings on a connection the store owns."""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import psycopg
import pytest
from psycopg import sql

from mneme import Progress, StoreBackendError
from mneme.stores.postgres import PostgresStore
from mneme.stores.postgres.operations import LOAD_QUIET_S
from mneme.stores.postgres.vector import LEGACY_INDEX_NAME, graph_name
from pgvector_helpers import (
    DIM,
    T0,
    admin,
    entry,
    fp,
    fresh,
    open_store,
    search_params,
    unit,
    vectors,
)

pytestmark = pytest.mark.backend("postgres")


def states(store: PostgresStore) -> dict[str, str]:
    return {g.namespace: g.state for g in store.vector_index_status()}


def plan(dsn: str, store: PostgresStore, namespace: str, q: npt.NDArray[np.float32]) -> str:
    from pgvector.psycopg import register_vector

    assert store._vec is not None
    with admin(dsn) as conn:
        register_vector(conn)
        query = sql.SQL("EXPLAIN (COSTS OFF) ") + store._vec.sql["search"]
        rows = conn.execute(query, search_params(namespace, q), prepare=False).fetchall()
    return "\n".join(r[0] for r in rows)


def test_a_namespace_that_grows_gets_its_graph_in_the_background(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    store = open_store(stores, postgres_dsn, fresh(), exact_search_max_rows=200)
    big, small = vectors(600, 1), vectors(50, 2)
    store.insert_many([entry(f"b{i}", v, "big") for i, v in enumerate(big)])
    store.insert_many([entry(f"s{i}", v, "small") for i, v in enumerate(small)])
    deadline = time.monotonic() + 120
    while states(store).get("big") != "ready" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert states(store) == {"big": "ready", "small": "exact"}
    # (Whether the planner walks a 600-row graph or sorts 600 rows is its choice by
    # cost; at the sizes that matter it takes the graph, as test_pgvector shows.)
    for i in (3, 333, 599):
        assert store.search("big", big[i], k=1, now=T0)[0][0].query_hash == f"b{i}"


def test_a_bulk_load_gets_its_graph_once_it_pauses(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    # A graph built while batches keep coming would make each later row an HNSW insert.
    schema = fresh()
    store = open_store(stores, postgres_dsn, schema, exact_search_max_rows=200)
    data = vectors(1_800, 8)
    for batch in range(6):  # a batch every LOAD_QUIET_S / 4 seconds: the load goes on
        if batch:
            time.sleep(LOAD_QUIET_S / 4)
        part = data[batch * 300 : (batch + 1) * 300]
        store.insert_many([entry(f"b{batch}-{i}", v, "big") for i, v in enumerate(part)])
        last_batch = time.monotonic()
        assert states(store) == {"big": "pending"}, f"a build started during batch {batch}"
    deadline = last_batch + LOAD_QUIET_S + 120
    while states(store)["big"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert states(store) == {"big": "ready"}
    assert time.monotonic() - last_batch >= LOAD_QUIET_S * 0.9
    assert store.search("big", data[301], k=1, now=T0)[0][0].query_hash == "b1-1"


def test_no_background_build_without_auto_index(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    store = open_store(stores, postgres_dsn, fresh(), exact_search_max_rows=100, auto_index=False)
    store.insert_many([entry(f"b{i}", v, "big") for i, v in enumerate(vectors(300, 3))])
    time.sleep(1.0)
    assert states(store) == {"big": "pending"}
    seen: list[Progress] = []
    assert store.build_vector_indexes(progress=seen.append) == ["big"]
    assert seen[0] == Progress("index", 0, 300)
    assert seen[-1] == Progress("index", 300, 300)
    assert states(store) == {"big": "ready"}
    assert store.build_vector_indexes() == []  # nothing left to do


def test_a_build_that_died_leaves_a_working_store_and_is_redone(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    schema = fresh()
    store = open_store(stores, postgres_dsn, schema, exact_search_max_rows=100, auto_index=False)
    data = vectors(3_000, 4)
    store.insert_many([entry(f"b{i}", v, "big") for i, v in enumerate(data)])
    assert store._vec is not None
    ddl = store._vec.create_graph(store._hnsw, "big", concurrently=True)
    with admin(postgres_dsn) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {}.vector_graphs (namespace, index_name) VALUES (%s, %s)").format(
                sql.Identifier(schema)
            ),
            ["big", graph_name("big")],
        )
        # A build cut short (here by a statement timeout) leaves an invalid index.
        for timeout_ms in (200, 50, 10, 2):
            conn.execute(sql.SQL("SET statement_timeout = {}").format(timeout_ms))
            try:
                conn.execute(ddl)
            except psycopg.errors.QueryCanceled:
                break
            conn.execute("RESET statement_timeout")
            conn.execute(
                sql.SQL("DROP INDEX {}.{}").format(
                    *map(sql.Identifier, (schema, graph_name("big")))
                )
            )
        else:
            pytest.fail("could not interrupt a graph build")
    assert states(store) == {"big": "invalid"}
    # Still answered, exactly, while the graph is unusable.
    assert graph_name("big") not in plan(postgres_dsn, store, "big", data[5])
    assert store.search("big", data[5], k=1, now=T0)[0][0].query_hash == "b5"
    assert store.build_vector_indexes() == ["big"]
    assert states(store) == {"big": "ready"}
    assert store.search("big", data[5], k=1, now=T0)[0][0].query_hash == "b5"


def test_writers_carry_on_while_a_graph_builds(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    schema = fresh()
    store = open_store(stores, postgres_dsn, schema, exact_search_max_rows=100, auto_index=False)
    writer = open_store(stores, postgres_dsn, schema, exact_search_max_rows=100, auto_index=False)
    data = vectors(30_000, 5)
    for i in range(0, len(data), 5_000):
        store.insert_many([entry(f"b{j}", data[j], "big") for j in range(i, i + 5_000)])
    built: list[list[str]] = []
    builder = threading.Thread(target=lambda: built.append(store.build_vector_indexes()))
    builder.start()
    durations, during_build = [], 0
    extra = vectors(200, 6)
    try:
        for i, v in enumerate(extra):
            started = time.perf_counter()
            writer.insert(entry(f"w{i}", v, "big" if i % 2 else "other"))
            durations.append(time.perf_counter() - started)
            during_build += builder.is_alive()
    finally:
        builder.join(300)
    assert built == [["big"]]
    assert during_build > 20, "the build finished before the writes could overlap it"
    assert max(durations) < 5.0
    for i in (1, 199):
        found = store.search("big" if i % 2 else "other", extra[i], k=1, now=T0)
        assert found[0][0].query_hash == f"w{i}"


def test_a_schema_with_the_earlier_all_namespace_index(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    schema = fresh()
    first = open_store(stores, postgres_dsn, schema, exact_search_max_rows=100, auto_index=False)
    data = vectors(400, 7)
    first.insert_many([entry(f"b{i}", v, "big") for i, v in enumerate(data)])
    first.close()
    s = sql.Identifier(schema)
    with admin(postgres_dsn) as conn:  # make it look like a schema of the earlier layout
        conn.execute(sql.SQL("DROP TABLE {}.vector_graphs").format(s))
        conn.execute(sql.SQL("DELETE FROM {}.schema_meta WHERE key = 'vector_layout'").format(s))
        conn.execute(
            sql.SQL(
                "CREATE INDEX {} ON {}.entry_vectors USING hnsw (embedding vector_cosine_ops)"
            ).format(sql.Identifier(LEGACY_INDEX_NAME), s)
        )
    store = open_store(stores, postgres_dsn, schema, exact_search_max_rows=100, auto_index=False)
    assert states(store) == {"big": "pending"}
    assert store.search("big", data[9], k=1, now=T0)[0][0].query_hash == "b9"
    assert store.build_vector_indexes() == ["big"]
    with admin(postgres_dsn) as conn:
        left = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexname LIKE %s",
            [schema, "%hnsw%"],
        ).fetchall()
    assert left == [(graph_name("big"),)]
    assert store.search("big", data[9], k=1, now=T0)[0][0].query_hash == "b9"


def test_bulk_load_through_copy_keeps_the_batch_rules(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    schema = fresh()
    store = open_store(stores, postgres_dsn, schema)
    data = vectors(700, 8)
    batch = [entry(f"k{i}", v, f"ns{i % 3}") for i, v in enumerate(data)]
    batch.append(entry("k5", data[6], "ns2"))  # the same key again: the later one wins
    ids = store.insert_many(batch)
    assert len(set(ids)) == 700 and ids[5] == ids[-1]
    got = store.get_by_hash("ns2", "k5")
    assert got is not None and got.embedding == data[6].astype("<f4").tobytes()
    again = store.insert_many(batch[:300])  # replacements keep their ids
    assert again == ids[:300]
    assert store.count() == 700
    with admin(postgres_dsn) as conn:
        side = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.entry_vectors").format(sql.Identifier(schema))
        ).fetchone()
    assert side == (700,)
    assert store.search("ns0", data[9], k=1, now=T0)[0][0].query_hash == "k9"


@pytest.mark.parametrize("use_pgvector", [True, False], ids=["pgvector", "bytea"])
def test_a_bulk_load_of_several_copy_chunks_keeps_every_value(
    postgres_dsn: str, stores: list[PostgresStore], use_pgvector: bool
) -> None:
    """The bulk path encodes the staging rows itself and upserts them chunk by chunk:
    every column comes back as written, NULLs included, on either schema."""
    schema = fresh()
    store = PostgresStore(postgres_dsn, schema=schema, use_pgvector=use_pgvector)
    store.open(fp(DIM), DIM)
    stores.append(store)
    data = vectors(4_500, 11)
    data[17] = 0.0  # no side vector: cosine is undefined
    batch = [
        replace(
            entry(f"k{i}", v, f"ns{i % 4}"),
            query=f"qüestion {i} \\N \t",
            response="r\u00e9ponse \\ " * (i % 7),
            metadata=None if i % 3 else {"i": i, "x": 0.5, "e": 1e16, "s": "ünï"},
            ttl=None if i % 2 else 60 + i,
            access_count=i % 5,
            last_accessed_at=T0 + i,
        )
        for i, v in enumerate(data)
    ]
    batch.append(replace(batch[10], response="the later one wins"))  # in another chunk
    ids = store.insert_many(batch)
    assert len(set(ids)) == 4_500 and ids[10] == ids[-1]
    by_key = {e.query_hash: e for e in batch}
    got = [store.get_by_hash(f"ns{i % 4}", f"k{i}") for i in range(4_500)]
    for i, g in enumerate(got):
        want = by_key[f"k{i}"]
        assert g is not None and g.id == ids[i]
        assert replace(g, id=0) == want, i
    if not use_pgvector:
        return
    with admin(postgres_dsn) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT v.id, v.namespace, v.expires_at, v.embedding::text, v.fresh "
                "FROM {}.entry_vectors v ORDER BY v.id"
            ).format(sql.Identifier(schema))
        ).fetchall()
    side = {r[0]: r for r in rows}
    assert len(side) == 4_500
    for i in (0, 1, 17, 2_001, 4_499):
        _, ns, expires, text, is_fresh = side[ids[i]]
        want = by_key[f"k{i}"]
        assert (ns, is_fresh) == (want.namespace, False)
        assert expires == (None if want.ttl is None else T0 + want.ttl)
        if i == 17:
            assert text is None
        else:
            values = np.array([float(x) for x in text.strip("[]").split(",")], np.float32)
            np.testing.assert_array_equal(values, data[i])


def test_a_bulk_load_that_fails_in_a_later_chunk_leaves_nothing(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    """The chunks of one load are one transaction: the server refusing a row of the
    fourth chunk (jsonb cannot hold NUL) undoes the three upserted before it."""
    store = open_store(stores, postgres_dsn, fresh())
    store.insert_many([entry("before", vectors(1, 1)[0])])
    batch = [entry(f"k{i}", v) for i, v in enumerate(vectors(3_500, 12))]
    batch[3_200] = replace(batch[3_200], metadata={"text": "nul \u0000 inside"})
    with pytest.raises(StoreBackendError) as raised:
        store.insert_many(batch)
    assert isinstance(raised.value.__cause__, psycopg.Error)
    assert store.count() == 1 and store.get_by_hash("default", "k0") is None
    store.insert_many(batch[:10])  # the staging table and the connection still work
    assert store.count() == 11


def test_an_owned_connection_gets_the_search_settings_once(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    store = open_store(stores, postgres_dsn, fresh(), ef_search=66)
    v = unit(np.ones(DIM))
    store.insert(entry("a", v))
    assert store.search("default", v, k=1, now=T0)[0][0].query_hash == "a"
    conn = store._source._conn  # type: ignore[attr-defined]
    assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("66",)
    with tempfile.TemporaryFile() as trace:
        conn.pgconn.trace(trace.fileno())
        try:
            assert store.search("default", v, k=1, now=T0)[0][0].query_hash == "a"
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        sent = trace.read().decode("utf-8", "replace")
    assert "set_config" not in sent and "BEGIN" not in sent
    assert sum("\tF\t" in line and "\tSync" in line for line in sent.splitlines()) == 1


def test_a_get_with_its_embedding_is_one_round_trip(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    from mneme import SemanticCache
    from mneme.testing import HashingEmbedder

    store = PostgresStore(postgres_dsn, schema=fresh(), use_pgvector=True)
    now = [float(T0)]
    with SemanticCache(
        store=store, embedder=HashingEmbedder(dim=DIM), clock=lambda: now[0]
    ) as cache:
        data = vectors(20, 9)
        cache.put("stored question", "stored answer", embedding=data[0], ttl=100)
        cache.put("other question", "other answer", embedding=data[1])
        # the same statement answers both layers, and agrees with the two calls; a live
        # exact row makes it skip the graph walk
        exact, found = store.lookup("default", _hash("stored question"), data[1], k=3, now=T0)
        assert exact == store.get_by_hash("default", _hash("stored question"))
        assert exact is not None and found == []
        exact, found = store.lookup("default", _hash("never asked"), data[1], k=3, now=T0)
        assert exact is None and found == store.search("default", data[1], k=3, now=T0)
        exact, found = store.lookup("default", _hash("stored question"), data[1], k=3, now=T0 + 100)
        assert exact is not None and exact.is_expired(T0 + 100)
        assert found == store.search("default", data[1], k=3, now=T0 + 100)
        conn = store._source._conn  # type: ignore[attr-defined]
        for query, vector, want in (
            ("stored question", data[5], ("exact", "stored answer")),
            ("a paraphrase", unit(data[1] + 0.01), ("semantic", "other answer")),
        ):
            with tempfile.TemporaryFile() as trace:
                conn.pgconn.trace(trace.fileno())
                try:
                    hit = cache.get(query, embedding=vector)
                finally:
                    conn.pgconn.untrace()
                trace.seek(0)
                lines = trace.read().decode("utf-8", "replace").splitlines()
            assert hit is not None and (hit.layer, hit.response) == want
            assert sum("\tF\t" in line and "\tSync" in line for line in lines) == 1
        now[0] += 200  # the exact entry expires: the same get falls through to Layer 2
        hit = cache.get("stored question", embedding=data[1])
        assert hit is not None and (hit.layer, hit.response) == ("semantic", "other answer")
        assert cache.stats().expirations == 1
        assert cache.get("nothing like it", embedding=unit(-data[1] - data[0])) is None


def _hash(query: str) -> str:
    from mneme._policy import normalize_query, query_hash

    return query_hash(normalize_query(query))


@pytest.mark.parametrize(
    ("ef_construction", "graph_rows"),
    # ef_search 60 x sqrt(1M / 100k) = 190; a graph built with 64 (as earlier versions
    # did) searches as if five times larger: 60 x sqrt(5 x 200k / 100k) = 190.
    [(128, 1_000_000), (64, 200_000)],
)
def test_a_large_graph_is_searched_with_a_wider_ef_search(
    postgres_dsn: str, stores: list[PostgresStore], ef_construction: int, graph_rows: int
) -> None:
    schema = fresh()
    store = open_store(
        stores,
        postgres_dsn,
        schema,
        exact_search_max_rows=100,
        auto_index=False,
        hnsw_ef_construction=ef_construction,
        ivfflat_max_rows=0,
    )
    data = vectors(300, 9)
    store.insert_many([entry(f"b{i}", v, "big") for i, v in enumerate(data)])
    store.build_vector_indexes()
    store.close()
    with admin(postgres_dsn) as conn:
        # The graph's size as its build recorded it, made as large as a larger graph.
        conn.execute(
            "UPDATE pg_catalog.pg_class SET reltuples = %s WHERE relname = %s "
            "AND relnamespace = %s::regnamespace",
            [graph_rows, graph_name("big"), schema],
        )
    with admin(postgres_dsn) as conn, tempfile.TemporaryFile() as trace:
        reader = PostgresStore(connection=conn, schema=schema, use_pgvector=True, ef_search=60)
        reader.open(fp(DIM), DIM)
        conn.pgconn.trace(trace.fileno())
        try:
            found = reader.search("big", data[7], k=1, now=T0)
            small = reader.search("other", data[7], k=1, now=T0)
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        sent = trace.read().decode("utf-8", "replace").split("Sync")
        reader.close()
    assert found[0][0].query_hash == "b7" and small == []
    # 190 for the large graph, set for the search's transaction; 60 for a namespace
    # without a graph.
    first = next(part for part in sent if "set_config" in part or "'190'" in part)
    assert "'190'" in first and "'60'" not in first
    assert any("'60'" in part for part in sent if part is not first)


def test_searches_on_the_stores_own_connection_are_planned_once_per_namespace(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    store = open_store(stores, postgres_dsn, fresh(), exact_search_max_rows=100, auto_index=False)
    # Quotes, a percent sign and a backslash: written into the statement as literals.
    names = ["big", "it's 100% o'clock \\ x", "it's 100"]
    data = {name: vectors(20_000 if name == "big" else 30, 20 + i) for i, name in enumerate(names)}
    for name, vs in data.items():
        store.insert_many([entry(f"{name}-{i}", v, name) for i, v in enumerate(vs)])
    assert store.build_vector_indexes() == ["big"]
    for _ in range(3):
        for name, vs in data.items():
            for i in (1, 17):
                found = store.search(name, vs[i], k=2, now=T0)
                assert found[0][0].query_hash == f"{name}-{i}"
                assert {e.namespace for e, _ in found} == {name}
    with store._source.borrow() as conn:
        plans = conn.execute(
            "SELECT name, statement, generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE '%entry_vectors%'"
        ).fetchall()
        # One statement for the namespace with a graph; one, with the namespace as a
        # parameter, shared by the two without (read exactly).
        assert len(plans) == 2
        assert all(custom == 0 for _, _, _, custom in plans)
        assert sorted(generic for _, _, generic, _ in plans) == [6, 12]
        shared, text = next((name, text) for name, text, generic, _ in plans if generic == 12)
        assert "'it" not in text and "$1" in text
        # The generic plan of the large namespace walks its own graph.
        big = next(name for name, text, _, _ in plans if "'big'" in text)
        vector = "[" + ",".join(str(float(x)) for x in data["big"][1]) + "]"
        explained = conn.execute(
            sql.SQL("EXPLAIN (COSTS OFF) EXECUTE {} ({}::vector, {}, -1)").format(
                sql.Identifier(big), sql.Literal(vector), sql.Literal(T0)
            )
        ).fetchall()
        # The shared statement's one plan reads the namespace's rows, never a graph.
        exact_plan = conn.execute(
            sql.SQL("EXPLAIN (COSTS OFF) EXECUTE {} ({}::vector, {}, {}, true, 20, 2, -1)").format(
                sql.Identifier(shared), sql.Literal(vector), sql.Literal("big"), sql.Literal(T0)
            )
        ).fetchall()
    assert graph_name("big") in "\n".join(row[0] for row in explained)
    assert "hnsw" not in "\n".join(row[0] for row in exact_plan).lower()
    assert "idx_entry_vectors_ns" in "\n".join(row[0] for row in exact_plan)
    # The graph's statement sets its ef_search before the walk: 100 x sqrt(20k / 100k)
    # for the 20,000-row graph. The exact scan leaves the setting alone (it walks none).
    for name, wanted in (("big", "45"), ("it's 100", "45"), ("big", "45")):
        store.search(name, data[name][2], k=1, now=T0)
        with store._source.borrow() as conn:
            assert conn.execute("SHOW hnsw.ef_search").fetchone() == (wanted,)
