"""Searches on a connection the store owns go through libpq as statements the store
prepares under its own names: same rows as a cursor, statements kept per connection
(and deallocated beyond the limit), prepared again when the connection lost them,
and errors surfacing as ``StoreBackendError``."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import numpy as np
import psycopg
import pytest

from mneme import StoreBackendError
from mneme.stores.postgres import PostgresStore, prepared
from pgvector_helpers import T0, admin, entry, fp, fresh, open_store, vectors

pytestmark = pytest.mark.backend("pgvector")

NAMESPACES = ["graph-a", "graph-b", "graph-c", "small"]


def filled(stores: list[PostgresStore], dsn: str) -> tuple[PostgresStore, dict[str, Any]]:
    """Three namespaces with an index each and one read exactly."""
    store = open_store(stores, dsn, fresh(), exact_search_max_rows=100, auto_index=False)
    data = {ns: vectors(300 if ns != "small" else 40, 50 + i) for i, ns in enumerate(NAMESPACES)}
    for ns, vs in data.items():
        store.insert_many([entry(f"{ns}-{i}", v, ns) for i, v in enumerate(vs)])
    assert sorted(store.build_vector_indexes()) == ["graph-a", "graph-b", "graph-c"]
    return store, data


def own_statements(store: PostgresStore) -> list[str]:
    with store._source.borrow() as conn:
        rows = conn.execute(
            "SELECT name FROM pg_prepared_statements WHERE name LIKE 'mneme\\_search\\_%' "
            "ORDER BY name"
        ).fetchall()
    return [str(name) for (name,) in rows]


def answers(store: PostgresStore, data: dict[str, Any]) -> list[list[tuple[str, float]]]:
    out = []
    for ns, vs in data.items():
        for i in (1, 7):
            found = store.search(ns, vs[i], k=3, now=T0, min_similarity=0.5)
            out.append([(e.query_hash, round(s, 6)) for e, s in found])
            _, looked = store.lookup(ns, "no such key", vs[i], k=3, now=T0, min_similarity=0.5)
            assert [(e.query_hash, round(s, 6)) for e, s in looked] == out[-1]
            assert out[-1][0][0] == f"{ns}-{i}"
    return out


def test_searches_are_prepared_once_under_the_stores_names_with_a_cursors_rows(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    store, data = filled(stores, postgres_dsn)
    first = answers(store, data)
    again = answers(store, data)
    assert again == first
    # A search and a lookup for each of the three indexed namespaces, and the two
    # statements shared by namespaces read exactly: 8, each prepared once.
    assert len(own_statements(store)) == 8
    # The same searches on a connection of the caller's go through a cursor.
    with admin(postgres_dsn) as conn:
        borrowed = PostgresStore(connection=conn, schema=store.schema, use_pgvector=True)
        borrowed.open(fp(32), 32)
        assert answers(borrowed, data) == first
        borrowed.close()


def test_statements_the_connection_lost_are_prepared_again(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    store, data = filled(stores, postgres_dsn)
    first = answers(store, data)
    with store._source.borrow() as conn:
        conn.execute("DEALLOCATE ALL")
    assert own_statements(store) == []
    assert answers(store, data) == first
    assert len(own_statements(store)) == 8


def test_beyond_the_limit_the_least_recently_used_statement_is_deallocated(
    postgres_dsn: str, stores: list[PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prepared, "PREPARED_MAX", 3)
    store, data = filled(stores, postgres_dsn)
    first = answers(store, data)
    kept = own_statements(store)
    assert len(kept) == 3
    assert answers(store, data) == first
    assert len(own_statements(store)) == 3


def test_an_error_is_a_store_error_and_the_connection_goes_on(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    store, data = filled(stores, postgres_dsn)
    q = data["graph-a"][1]
    assert store.search("graph-a", q, k=1, now=T0)[0][0].query_hash == "graph-a-1"
    with store._source.borrow() as conn:
        conn.execute("SET lock_timeout = '50ms'")
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with admin(postgres_dsn) as other, other.transaction():
            other.execute(f'LOCK TABLE "{store.schema}".entry_vectors IN ACCESS EXCLUSIVE MODE')
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        with pytest.raises(StoreBackendError) as caught:
            store.search("graph-a", q, k=1, now=T0)
        assert isinstance(caught.value.__cause__, psycopg.errors.LockNotAvailable)
    finally:
        release.set()
        holder.join()
    found = store.search("graph-a", q, k=1, now=T0)
    assert found[0][0].query_hash == "graph-a-1"
    assert np.isclose(found[0][1], 1.0, atol=1e-5)


def test_the_statement_names_do_not_keep_a_closed_connection_alive(
    postgres_dsn: str, stores: list[PostgresStore]
) -> None:
    store, data = filled(stores, postgres_dsn)
    answers(store, data)
    with store._source.borrow() as conn:
        alive = weakref.ref(conn)
    assert alive() in prepared._by_connection
    stores.remove(store)
    store.close()
    del store, conn
    gc.collect()
    assert alive() is None
