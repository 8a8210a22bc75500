"""Hostile input at the SQL boundary, and a password after a live connection breaks.

* Namespaces and queries written as SQL (quotes, semicolons, comments, tautologies,
  backslashes, dollar quotes, LIKE wildcards, Unicode quotes) are data: a tenant using
  them reads and changes only its own rows. The victim's rows are compared column by
  column, by direct SQL, before and after, on SQLite and on Postgres.
* A password in a DSN is not shown by the errors raised after the server drops the
  connection either.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mneme import SemanticCache, SQLiteStore, Store, StoreBackendError
from mneme.stores.postgres.store import PostgresStore
from mneme.testing import HashingEmbedder
from secret_helpers import SECRET, assert_secret_absent, capture_all_logs, everything_said

EMBEDDER = HashingEmbedder(dim=16)
VICTIM = "tenant_a"
VICTIM_ENTRIES = {
    "What is our Q3 revenue?": "secret: 4.2M",
    "Who is the CEO?": "secret: Alice",
    "x'; DROP TABLE entries; --": "secret: stored by the victim",
}
HOSTILE = [
    "x'; DROP TABLE entries; --",
    "' OR '1'='1",
    "' OR 1=1 --",
    "tenant_a' --",
    "tenant_a'; DELETE FROM entries WHERE namespace = 'tenant_a'; --",
    "tenant_a\\",
    "\\'; UPDATE entries SET response = 'pwned'; --",
    "$$; DROP TABLE entries; $$",
    "$x$ tenant_a $x$",
    "tenant_a\u2019 OR \u20181\u2019=\u20181",
    "\uff07 OR \uff071\uff07=\uff071",
    "/* */ tenant_a",
    "tenant_a;",
    "tenant_%",
    "%",
    "_",
    "tenant_a\n",
    "TENANT_A",
    " tenant_a",
    '"; DROP TABLE "entries',
    "); DROP SCHEMA public CASCADE; --",
]
ROW_COLUMNS = (
    "id, namespace, query_hash, query, response, embedding, metadata, "
    "created_at, last_accessed_at, ttl, access_count"
)


# -- SQL injection through namespaces and queries --------------------------------------


class Backend:
    """A store for the test and a way to read its rows behind its back."""

    def __init__(self, make: Callable[[], Store], rows: Callable[[], list[tuple[Any, ...]]]):
        self.make = make
        self.rows = rows


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.backend("postgres"))])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = str(tmp_path / "tenants.db")

        def sqlite_rows() -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(path)
            try:
                return conn.execute(
                    f"SELECT {ROW_COLUMNS} FROM entries WHERE namespace = ? ORDER BY id",  # noqa: S608
                    (VICTIM,),
                ).fetchall()
            finally:
                conn.close()

        return Backend(lambda: SQLiteStore(path), sqlite_rows)
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema: str = request.getfixturevalue("pg_schema")

    def pg_rows() -> list[tuple[Any, ...]]:
        query = sql.SQL("SELECT {} FROM {} WHERE namespace = %s ORDER BY id").format(
            sql.SQL(ROW_COLUMNS), sql.Identifier(schema, "entries")
        )
        with psycopg.connect(dsn) as conn:
            return conn.execute(query, [VICTIM]).fetchall()

    return Backend(lambda: PostgresStore(dsn, schema=schema), pg_rows)


def seed_victim(backend: Backend) -> list[tuple[Any, ...]]:
    with SemanticCache(store=backend.make(), embedder=EMBEDDER) as cache:
        for query, response in VICTIM_ENTRIES.items():
            cache.put(query, response, namespace=VICTIM, metadata={"owner": VICTIM})
    rows = backend.rows()
    assert len(rows) == len(VICTIM_ENTRIES)
    return rows


def assert_not_victims(hit: Any) -> None:
    assert hit is None or (hit.namespace != VICTIM and not hit.response.startswith("secret"))


def test_hostile_namespaces_touch_only_their_own_rows(backend: Backend) -> None:
    before = seed_victim(backend)
    with SemanticCache(store=backend.make(), embedder=EMBEDDER) as cache:
        for ns in HOSTILE:
            for query in VICTIM_ENTRIES:
                assert_not_victims(cache.get(query, namespace=ns))
                cache.put(query, f"evil in {ns}", namespace=ns)
                hit = cache.get(query, namespace=ns)
                assert hit is not None and (hit.namespace, hit.response) == (ns, f"evil in {ns}")
            victim_vector = EMBEDDER.embed("who is the ceo?")
            hit = cache.get("probe", embedding=victim_vector, namespace=ns)
            assert hit is not None and hit.response == f"evil in {ns}"
            assert cache.stats(namespace=ns).entries == len(VICTIM_ENTRIES)
            assert cache.delete("Who is the CEO?", namespace=ns) is True
            assert cache.vacuum(namespace=ns) == 0
            assert cache.clear_namespace(ns) == len(VICTIM_ENTRIES) - 1
            assert cache.stats(namespace=ns).entries == 0
            assert_not_victims(cache.get("What is our Q3 revenue?", namespace=ns))
        assert cache.list_namespaces() == [VICTIM]
        assert cache.stats().entries == len(VICTIM_ENTRIES)
        assert cache.health().integrity_ok
    assert backend.rows() == before


def test_hostile_queries_and_metadata_stay_data(backend: Backend) -> None:
    before = seed_victim(backend)
    attacker = "attacker"
    with SemanticCache(store=backend.make(), embedder=EMBEDDER) as cache:
        for i, query in enumerate(HOSTILE):
            cache.put(query, f"evil {i}", namespace=attacker, metadata={"sql": query, "i": i})
        # Queries are normalised ("TENANT_A", " tenant_a" are one key): the last put wins.
        last = {" ".join(q.split()).casefold(): i for i, q in enumerate(HOSTILE)}
        for query in HOSTILE:
            i = last[" ".join(query.split()).casefold()]
            hit = cache.get(query, namespace=attacker)
            assert hit is not None and hit.layer == "exact"
            assert (hit.response, hit.metadata) == (f"evil {i}", {"sql": HOSTILE[i], "i": i})
        # The same hostile text as the victim's own query, from the attacker's side.
        hit = cache.get("x'; DROP TABLE entries; --", namespace=attacker)
        assert hit is not None and hit.response == "evil 0"
        for query in HOSTILE:
            cache.delete(query, namespace=attacker)
        assert cache.stats(namespace=attacker).entries == 0
        # The victim still reads its own entries, the hostile-looking one included.
        for query, response in VICTIM_ENTRIES.items():
            own = cache.get(query, namespace=VICTIM)
            assert own is not None and own.response == response
    after = backend.rows()
    # Only the victim's own lookups changed its rows: access time and count.
    assert [r[:8] + r[9:10] for r in after] == [r[:8] + r[9:10] for r in before]
    assert [r[10] for r in after] == [r[10] + 1 for r in before]


# -- passwords ------------------------------------------------------------------------


@pytest.mark.backend("postgres")
def test_password_absent_when_a_live_connection_breaks(
    postgres_dsn: str, pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A DSN with a password that the (trust-auth) server ignores: errors raised after
    a disconnect must not show it either."""
    all_logs = capture_all_logs(caplog)
    with psycopg.connect(postgres_dsn) as probe:
        info = probe.info
        host, port, dbname, user = info.host, info.port, info.dbname, info.user
    app = "mneme-secret-test"
    dsn = psycopg.conninfo.make_conninfo(
        host=host,
        port=port,
        dbname=dbname,
        user=user,
        password=f"Lv-{SECRET}",
        application_name=app,
    )
    with SemanticCache(store=PostgresStore(dsn, schema=pg_schema), embedder=EMBEDDER) as cache:
        cache.put("q", "r")
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                [app],
            )
        with pytest.raises(StoreBackendError) as raised:
            cache.get("q")
        assert_secret_absent(everything_said(raised.value, all_logs))
        hit = cache.get("q")  # reconnected
        assert hit is not None and hit.response == "r"
