"""The Postgres version counter spread over ``version_slots``: the contract it keeps
(every committed change moves it, in the same transaction, and never before the change
is visible), what it no longer does (make every writer wait for one row), and the
upgrade of a schema written by an earlier mneme."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from conftest import EMBEDDER
from mneme import StoreBackendError
from mneme.stores.postgres.schema import load_migrations
from mneme.stores.postgres.statements import VERSION_SLOTS
from mneme.stores.postgres.store import PostgresStore
from pg_fixtures import PostgresStoreFactory
from store_entries import make_entry

pytestmark = pytest.mark.backend("postgres")


def _open(factory: PostgresStoreFactory) -> PostgresStore:
    store = factory()
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    return store


def _ident(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def test_multi_process_state_still_reads_as_documented(
    postgres_store_factory: PostgresStoreFactory, postgres_dsn: str
) -> None:
    store = _open(postgres_store_factory)
    try:
        store.insert(make_entry("a"))
        store.insert(make_entry("b"))
        store.delete_by_id(store.insert(make_entry("c")))
        with psycopg.connect(postgres_dsn) as conn:
            rows: dict[str, str] = dict(
                conn.execute(
                    sql.SQL("SELECT key, value FROM {}").format(
                        _ident(store.schema, "multi_process_state")
                    )
                ).fetchall()
            )
            slots = conn.execute(
                sql.SQL("SELECT count(*), sum(value) FROM {}").format(
                    _ident(store.schema, "version_slots")
                )
            ).fetchone()
        assert rows == {"version_counter": "4", "schema_version": "2"}
        assert store.read_version_counter() == 4
        assert slots == (VERSION_SLOTS, 4)
        assert store.integrity_check()
    finally:
        store.close()


def test_a_schema_of_version_1_keeps_its_counter(postgres_dsn: str, pg_schema: str) -> None:
    first = load_migrations()[0]
    ident = sql.Identifier(pg_schema)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        conn.execute(sql.SQL(first.text).format(schema=ident))
        for table in ("multi_process_state", "schema_meta"):
            conn.execute(
                sql.SQL("INSERT INTO {} (key, value) VALUES ('schema_version', '1')").format(
                    _ident(pg_schema, table)
                )
            )
        conn.execute(
            sql.SQL("UPDATE {} SET value = '41' WHERE key = 'version_counter'").format(
                _ident(pg_schema, "multi_process_state")
            )
        )
    store = PostgresStore(postgres_dsn, schema=pg_schema)
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    try:
        assert store.read_version_counter() == 41
        store.insert(make_entry("after the upgrade"))
        assert store.read_version_counter() == 42
        assert store.read_meta("schema_version") == "2"
        assert store.integrity_check()
        with psycopg.connect(postgres_dsn) as conn:
            kind = conn.execute(
                "SELECT relkind FROM pg_catalog.pg_class WHERE oid = to_regclass(%s)",
                [f'"{pg_schema}".multi_process_state'],
            ).fetchone()
        assert kind == ("v",)
    finally:
        store.close()
    again = PostgresStore(postgres_dsn, schema=pg_schema)
    again.open(EMBEDDER.fingerprint, EMBEDDER.dim)  # no DDL at the current version
    try:
        assert again.read_version_counter() == 42
    finally:
        again.close()


def test_a_writer_waits_only_for_its_own_slot(postgres_dsn: str, pg_schema: str) -> None:
    # One pooled connection, so its slot is known; a write that would wait for a
    # slot's lock fails after 2 s instead of hanging the test.
    pool: ConnectionPool[Any] = ConnectionPool(
        postgres_dsn,
        min_size=1,
        max_size=1,
        kwargs={"autocommit": True, "options": "-c lock_timeout=2000"},
        open=True,
    )
    store = PostgresStore(pool=pool, schema=pg_schema)
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    try:
        with pool.connection() as conn:
            own = conn.info.backend_pid % VERSION_SLOTS
        slots = _ident(pg_schema, "version_slots")
        # Another session in the middle of a write holds every other slot's lock...
        with psycopg.connect(postgres_dsn) as other:
            other.execute(
                sql.SQL("SELECT slot FROM {} WHERE slot <> %s FOR UPDATE").format(slots), [own]
            )
            store.insert(make_entry("not held up"))  # ...and this write does not wait.
            # Holding the store's own slot makes it wait (here: until lock_timeout).
            other.execute(
                sql.SQL("SELECT slot FROM {} WHERE slot = %s FOR UPDATE").format(slots), [own]
            )
            with pytest.raises(StoreBackendError, match="lock timeout"):
                store.insert(make_entry("held up"))
            other.rollback()
        store.insert(make_entry("held up"))
        assert store.count() == 2
        assert store.read_version_counter() == 2
    finally:
        store.close()
        pool.close()


def test_a_reader_never_sees_a_version_ahead_of_the_rows(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    """What stale-tolerant readers rely on: a version they read covers only changes
    already visible, so after reading it, at least that many inserts are there."""
    writers = [_open(postgres_store_factory) for _ in range(3)]
    reader = _open(postgres_store_factory)
    halt = threading.Event()
    errors: list[BaseException] = []

    def write(w: int, store: PostgresStore) -> None:
        try:
            i = 0
            while not halt.is_set():
                store.insert(make_entry(f"w{w}-{i}", seed=i))
                i += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w, s)) for w, s in enumerate(writers)]
    for t in threads:
        t.start()
    try:
        checks = 0
        while checks < 300 and not errors:
            version = reader.read_version_counter()
            assert reader.count() >= version
            checks += 1
    finally:
        halt.set()
        for t in threads:
            t.join()
    assert errors == []
    assert reader.read_version_counter() == reader.count()
    for s in [*writers, reader]:
        s.close()


def test_batches_in_opposite_orders_never_fail(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    """Writers no longer queue on one row, so two batches can lock the same entries in
    opposite orders; the deadlock the server breaks is retried, never surfaced."""
    stores = [_open(postgres_store_factory) for _ in range(2)]
    keys = [f"k{i}" for i in range(20)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(n: int, store: PostgresStore) -> None:
        order = keys if n == 0 else keys[::-1]
        try:
            barrier.wait()
            for round_ in range(25):
                store.insert_many([make_entry(k, response=f"{n}-{round_}") for k in order])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n, s)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stores[0].count() == len(keys)
    assert stores[0].read_version_counter() == 2 * 25
    for s in stores:
        s.close()
