"""Schema names, and secrets in errors and logs, without a server.

* PostgresStore accepts only plain schema names: ASCII letters, digits and
  underscores, starting with a letter or underscore, 1 to 63 characters; anything else
  is refused with ValueError at construction, before any I/O.
* A password in a DSN never reaches an error message, its chained causes, a traceback
  or a log record, whatever the DSN's form. The DSNs here point at a closed port, so
  connecting fails without a server.

SQL-looking namespaces and queries on real stores, and a password after a live
connection breaks, are in ``tests/backends/test_security_backends.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from mneme import AsyncSemanticCache, SemanticCache, StoreBackendError
from mneme.stores.postgres.store import PostgresStore
from mneme.testing import HashingEmbedder
from secret_helpers import SECRET, assert_secret_absent, capture_all_logs, everything_said

EMBEDDER = HashingEmbedder(dim=16)


# -- schema names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        "mneme; DROP",
        "mneme; DROP SCHEMA public CASCADE; --",
        "a-b",
        '"x"',
        "x" * 64,
        "",
        "1abc",
        "sch ema",
        "a.b",
        "mneme'",
        "é",
        "x\x00",
        "tab\t",
    ],
)
def test_unsafe_schema_names_are_refused(schema: str) -> None:
    with pytest.raises(ValueError, match="alphanumeric"):
        PostgresStore("postgresql://u@127.0.0.1:1/db", schema=schema)


@pytest.mark.parametrize("schema", ["mneme", "_private", "Tenant_42", "x" * 63])
def test_plain_schema_names_are_accepted(schema: str) -> None:
    store = PostgresStore("postgresql://u@127.0.0.1:1/db", schema=schema)  # no I/O yet
    assert store.schema == schema
    store.close()


# -- passwords ------------------------------------------------------------------------

DSNS = {
    "url": f"postgresql://mneme_user:Pw-{SECRET}@127.0.0.1:1/db?connect_timeout=1",
    "url-encoded": f"postgresql://mneme_user:Zq%23{SECRET}@127.0.0.1:1/db?connect_timeout=1",
    "url-query": f"postgresql://mneme_user@127.0.0.1:1/db?password=Qp-{SECRET}&connect_timeout=1",
    "keyvalue": f"host=127.0.0.1 port=1 user=u password=Kv-{SECRET} dbname=db connect_timeout=1",
    "keyvalue-quoted": (
        f"host=127.0.0.1 port=1 user=u password='sp ace {SECRET}' dbname=db connect_timeout=1"
    ),
}


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    yield capture_all_logs(caplog)


@pytest.mark.parametrize("form", list(DSNS))
def test_dsn_password_never_appears_in_errors_or_logs(
    form: str, all_logs: pytest.LogCaptureFixture
) -> None:
    dsn = DSNS[form]
    store = PostgresStore(dsn, connect_timeout=1)
    with pytest.raises(StoreBackendError, match="connect") as info:
        SemanticCache(store=store, embedder=EMBEDDER)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    text = everything_said(info.value, all_logs, repr(store), str(store))
    assert "127.0.0.1" in text  # the message does say where it tried
    assert_secret_absent(text)


@pytest.mark.parametrize("form", ["url", "keyvalue"])
def test_dsn_password_never_appears_from_the_async_cache(
    form: str, all_logs: pytest.LogCaptureFixture
) -> None:
    dsn = DSNS[form]

    async def main() -> None:
        async with AsyncSemanticCache(store=PostgresStore(dsn), embedder=EMBEDDER):
            pass

    with pytest.raises(StoreBackendError) as info:
        asyncio.run(main())
    assert_secret_absent(everything_said(info.value, all_logs))


def test_pool_password_never_appears_in_errors_or_logs(
    all_logs: pytest.LogCaptureFixture,
) -> None:
    dsn = DSNS["url"]
    pool: ConnectionPool[Any] = ConnectionPool(
        dsn, min_size=1, max_size=1, timeout=1, open=False, kwargs={"connect_timeout": 1}
    )
    pool.open(wait=False)
    try:
        with pytest.raises(StoreBackendError) as info:
            SemanticCache(store=PostgresStore(pool=pool), embedder=EMBEDDER)
        assert isinstance(info.value.__cause__, psycopg.Error)
        text = everything_said(info.value, all_logs, repr(pool), str(pool.get_stats()))
    finally:
        pool.close()
    assert_secret_absent(text)
