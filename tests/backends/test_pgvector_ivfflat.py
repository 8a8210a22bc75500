"""IVFFlat indexes for namespaces up to ``ivfflat_max_rows``: chosen by size, searched
with the store's probes, rebuilt with more lists (and then as an HNSW graph) as the
namespace grows, and the leftovers of a rebuild that died dropped."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from psycopg import sql

from mneme.stores.postgres import PostgresStore
from mneme.stores.postgres.graphs import VectorGraph, sibling_name
from mneme.stores.postgres.vector import graph_name
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


def status(store: PostgresStore) -> dict[str, VectorGraph]:
    return {g.namespace: g for g in store.vector_index_status()}


def indexes(dsn: str, schema: str) -> dict[str, str]:
    """The side table's namespace indexes: name -> definition."""
    with admin(dsn) as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
            "AND indexname LIKE 'idx\\_ev\\_hnsw\\_%%'",
            [schema],
        ).fetchall()
    return {str(name): str(definition) for name, definition in rows}


def registered(dsn: str, schema: str, namespace: str) -> str:
    with admin(dsn) as conn:
        row = conn.execute(
            sql.SQL("SELECT index_name FROM {}.vector_graphs WHERE namespace = %s").format(
                sql.Identifier(schema)
            ),
            [namespace],
        ).fetchone()
    assert row is not None
    return str(row[0])


def built_on_demand(
    stores: list[PostgresStore], dsn: str, ivfflat_max_rows: int
) -> tuple[PostgresStore, str]:
    """A store on a new schema whose indexes are built by build_vector_indexes() only."""
    schema = fresh()
    options = {"exact_search_max_rows": 100, "auto_index": False}
    return open_store(stores, dsn, schema, ivfflat_max_rows=ivfflat_max_rows, **options), schema


def add(store: PostgresStore, data: npt.NDArray[np.float32], namespace: str, start: int) -> None:
    store.insert_many(
        [entry(f"{namespace}{start + i}", v, namespace) for i, v in enumerate(data[start:])]
    )


def top_one_agreement(
    store: PostgresStore, data: npt.NDArray[np.float32], namespace: str, count: int
) -> float:
    """Share of near duplicates whose top hit is NumPy's nearest row; the reported
    similarities are checked against NumPy on the way."""
    rng = np.random.default_rng(5)
    agree = 0
    for i in rng.integers(0, len(data), count):
        q = unit(data[i] + 0.02 * rng.standard_normal(DIM))
        sims = data @ q
        found = store.search(namespace, q, k=3, now=T0)
        assert found, f"no candidate in {namespace!r}"
        for got, similarity in found:
            row = int(got.query_hash.removeprefix(namespace))
            assert abs(similarity - float(sims[row])) < 5e-6
        agree += found[0][0].query_hash == f"{namespace}{int(np.argmax(sims))}"
    return agree / count


def test_namespaces_get_ivfflat_up_to_the_limit_and_hnsw_above(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    store, schema = built_on_demand(stores, postgres_dsn, 500)
    mid, big, small = vectors(400, 1), vectors(700, 2), vectors(60, 3)
    add(store, mid, "mid", 0)
    add(store, big, "big", 0)
    add(store, small, "small", 0)
    assert sorted(store.build_vector_indexes()) == ["big", "mid"]
    now = status(store)
    assert (now["mid"].state, now["mid"].method, now["mid"].lists) == ("ready", "ivfflat", 20)
    assert (now["big"].state, now["big"].method, now["big"].lists) == ("ready", "hnsw", None)
    assert (now["small"].state, now["small"].method) == ("exact", None)
    defs = indexes(postgres_dsn, schema)
    assert "USING ivfflat" in defs[graph_name("mid")] and "lists='20'" in defs[graph_name("mid")]
    assert f"halfvec({DIM})) halfvec_cosine_ops" in defs[graph_name("mid")]
    assert "WHERE ((namespace = 'mid'::text) AND (NOT fresh))" in defs[graph_name("mid")]
    assert "USING hnsw" in defs[graph_name("big")]
    assert top_one_agreement(store, mid, "mid", 150) >= 0.98
    assert top_one_agreement(store, big, "big", 150) >= 0.98
    assert top_one_agreement(store, small, "small", 30) == 1.0
    # The planner searches the namespace's IVFFlat index.
    with admin(postgres_dsn) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        assert store._vec is not None
        query = sql.SQL("EXPLAIN (COSTS OFF) ") + store._vec.sql["search"]
        params = search_params("mid", mid[0], scan=3)
        plan = "\n".join(r[0] for r in conn.execute(query, params).fetchall())
    assert graph_name("mid") in plan


def test_an_ivfflat_index_is_rebuilt_as_its_namespace_grows(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    store, schema = built_on_demand(stores, postgres_dsn, 1_000)
    data = vectors(1_050, 4)
    name = graph_name("ns")
    add(store, data[:150], "ns", 0)
    assert store.build_vector_indexes() == ["ns"]
    assert (status(store)["ns"].method, status(store)["ns"].lists) == ("ivfflat", 12)
    # 12 lists serve up to 4 x 12^2 = 576 rows: at 575 nothing is rebuilt.
    add(store, data[:575], "ns", 150)
    assert store.build_vector_indexes() == []
    # 650 rows: the index is rebuilt beside the old one, under the namespace's other
    # name, with round(sqrt(650)) = 25 lists; the old one is dropped.
    add(store, data[:650], "ns", 575)
    assert store.build_vector_indexes() == ["ns"]
    assert (status(store)["ns"].method, status(store)["ns"].lists) == ("ivfflat", 25)
    assert registered(postgres_dsn, schema, "ns") == sibling_name(name)
    assert list(indexes(postgres_dsn, schema)) == [sibling_name(name)]
    assert top_one_agreement(store, data[:650], "ns", 100) >= 0.98
    # Past ivfflat_max_rows: an HNSW graph, under the first name again.
    add(store, data, "ns", 650)
    assert store.build_vector_indexes() == ["ns"]
    now = status(store)["ns"]
    assert (now.state, now.method, now.rows) == ("ready", "hnsw", 1_050)
    assert registered(postgres_dsn, schema, "ns") == name
    assert "USING hnsw" in indexes(postgres_dsn, schema)[name]
    assert list(indexes(postgres_dsn, schema)) == [name]
    assert top_one_agreement(store, data, "ns", 100) >= 0.98
    # A namespace that shrinks keeps its graph.
    with admin(postgres_dsn) as conn:
        conn.execute(
            sql.SQL("DELETE FROM {}.entries WHERE namespace = 'ns' AND id % 2 = 0").format(
                sql.Identifier(schema)
            )
        )
    assert store.build_vector_indexes() == []
    assert status(store)["ns"].method == "hnsw"


def test_a_store_rebuilds_an_outgrown_index_in_the_background(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    schema = fresh()
    store = open_store(stores, postgres_dsn, schema, exact_search_max_rows=100)
    data = vectors(900, 5)
    add(store, data[:150], "ns", 0)  # the first write checks the size: an index is due
    deadline = time.monotonic() + 90
    while status(store)["ns"].state != "ready" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (status(store)["ns"].method, status(store)["ns"].lists) == ("ivfflat", 12)
    # 750 more rows, written after the store learnt the index's 12 lists: the check
    # after 500 of them finds 650 > 576 rows and rebuilds it, with lists for the rows
    # there are when the build starts (650 or 900).
    for i in range(150, 900, 250):
        add(store, data[: i + 250], "ns", i)
    deadline = time.monotonic() + 90
    while status(store)["ns"].lists in (12, None) and time.monotonic() < deadline:
        time.sleep(0.2)
    now = status(store)["ns"]
    assert (now.state, now.method, now.rows) == ("ready", "ivfflat", 900)
    assert now.lists in (25, 30)
    assert list(indexes(postgres_dsn, schema)) == [registered(postgres_dsn, schema, "ns")]
    assert top_one_agreement(store, data, "ns", 60) >= 0.98


@pytest.mark.parametrize("died", ["before the switch", "after the switch"])
def test_a_rebuild_that_died_leaves_a_working_store_and_is_cleaned_up(
    postgres_dsn: str, stores: list[PostgresStore], died: str
) -> None:
    store, schema = built_on_demand(stores, postgres_dsn, 50_000)
    data = vectors(300, 6)
    add(store, data, "ns", 0)
    assert store.build_vector_indexes() == ["ns"]
    name, other = graph_name("ns"), sibling_name(graph_name("ns"))
    assert store._vec is not None
    ddl = store._vec.create_graph(store._hnsw, "ns", concurrently=False, rows=300, name=other)
    with admin(postgres_dsn) as conn:
        conn.execute(ddl)  # the new index was built...
        if died == "after the switch":  # ... and the registry switched to it
            conn.execute(
                sql.SQL("UPDATE {}.vector_graphs SET index_name = %s").format(
                    sql.Identifier(schema)
                ),
                [other],
            )
    # Two valid indexes of the namespace: searches are right whichever is used.
    assert sorted(indexes(postgres_dsn, schema)) == sorted([name, other])
    assert top_one_agreement(store, data, "ns", 40) >= 0.95
    # The next build drops the one no registry row names.
    assert store.build_vector_indexes() == []
    kept = registered(postgres_dsn, schema, "ns")
    assert kept == (other if died == "after the switch" else name)
    assert list(indexes(postgres_dsn, schema)) == [kept]
    assert status(store)["ns"].state == "ready"
    assert top_one_agreement(store, data, "ns", 40) >= 0.95


def test_the_probes_setting_reaches_the_session_and_stays_local_on_a_borrowed_connection(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    schema = fresh()
    owner = open_store(stores, postgres_dsn, schema, exact_search_max_rows=10, ivfflat_probes=9)
    data = vectors(200, 7)
    add(owner, data, "ns", 0)
    assert owner.build_vector_indexes() == ["ns"]
    assert owner.search("ns", data[3], k=1, now=T0)[0][0].query_hash == "ns3"
    with owner._source.borrow() as conn:  # the store's own connection: for its session
        assert conn.execute("SHOW ivfflat.probes").fetchone() == ("9",)
    with admin(postgres_dsn) as conn:
        conn.execute("SELECT '[1]'::vector")  # loads pgvector, which defines ivfflat.*
        default = conn.execute("SHOW ivfflat.probes").fetchone()
        borrowed = PostgresStore(
            connection=conn, schema=schema, use_pgvector=True, ivfflat_probes=9
        )
        borrowed.open(fp(DIM), DIM)
        assert borrowed.search("ns", data[5], k=1, now=T0)[0][0].query_hash == "ns5"
        assert conn.execute("SHOW ivfflat.probes").fetchone() == default
        borrowed.close()


@pytest.mark.parametrize(
    ("option", "value"),
    [("ivfflat_max_rows", -1), ("ivfflat_probes", 0), ("ivfflat_probes", 40_000)],
)
def test_ivfflat_options_are_checked(postgres_dsn: str, option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=option):
        PostgresStore(postgres_dsn, schema=fresh(), use_pgvector=True, **{option: value})
