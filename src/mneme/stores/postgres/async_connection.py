"""Where a Postgres store gets its connections: its own, the caller's, or a pool.

psycopg is imported lazily so that ``import mneme`` works without the extra.
"""

# async-only: begin
# This file is the source of connection.py (the sync connections): edit it, then run
# `make generate` (scripts/unasync.py).
# async-only: end

from __future__ import annotations

import asyncio  # async-only
import contextlib

# sync: import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from mneme._errors import StoreBackendError
from mneme.stores.postgres.dsn import connect_args, connect_error, require_psycopg

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = [
    "AsyncCallerConnection",
    "AsyncConnectionSource",
    "AsyncOwnedConnection",
    "AsyncPoolConnection",
]


class AsyncConnectionSource(Protocol):
    """Lends a connection for one operation."""

    def borrow(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection[Any]]: ...

    async def close(self) -> None: ...


# Prepared statements a connection the store owns keeps (psycopg's cache; each holds a
# plan in the server process, a few tens of kB).
PREPARED_MAX = 512


class AsyncOwnedConnection:
    """One ``AsyncConnection`` the store opens itself (autocommit), reopened when
    broken."""

    def __init__(self, dsn: str, connect_timeout: float) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._conn: AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()  # async-only
        # sync: self._lock = threading.RLock()

    async def _connect(self) -> AsyncConnection[Any]:
        psycopg = require_psycopg()
        dsn, kwargs = connect_args(self._dsn, self._connect_timeout)
        try:
            conn: AsyncConnection[Any] = await psycopg.AsyncConnection.connect(dsn, **kwargs)
        except psycopg.Error as exc:
            raise connect_error(self._dsn, exc) from exc
        # Searches are prepared per namespace (two statements each): psycopg's default of
        # 100 would have 50 busy namespaces evict and re-plan statements on every call.
        conn.prepared_max = PREPARED_MAX
        return conn

    @contextlib.asynccontextmanager
    async def borrow(self) -> AsyncIterator[AsyncConnection[Any]]:
        async with self._lock:
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                if conn is not None:
                    await conn.close()
                self._conn = conn = await self._connect()
            yield conn

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None

    def cancel(self) -> None:
        """Ask the server to stop the statement this connection is running: safe from
        another thread, and nothing happens when none is running."""
        conn = self._conn
        if conn is not None and not conn.closed:
            with contextlib.suppress(Exception):
                conn.cancel()


class AsyncCallerConnection:
    """The caller's ``AsyncConnection``: used as it is, never closed, never
    reconfigured."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()  # async-only
        # sync: self._lock = threading.RLock()

    @contextlib.asynccontextmanager
    async def borrow(self) -> AsyncIterator[AsyncConnection[Any]]:
        async with self._lock:
            if self._conn.closed:
                raise StoreBackendError(
                    "the connection passed to AsyncPostgresStore(connection=...) is closed; "
                    "pass an open one, or use dsn= or pool= so the store can reconnect"
                )
            yield self._conn

    async def close(self) -> None:
        pass


class AsyncPoolConnection:
    """Borrows one connection per call from a psycopg_pool ``AsyncConnectionPool``, or
    from anything of the same kind with ``connection()`` or ``getconn()``/``putconn()``."""

    def __init__(self, pool: Any) -> None:
        if not (hasattr(pool, "connection") or hasattr(pool, "getconn")):
            raise ValueError("pool must have connection() or getconn()/putconn()")
        self._pool = pool

    @contextlib.asynccontextmanager
    async def borrow(self) -> AsyncIterator[AsyncConnection[Any]]:
        if hasattr(self._pool, "connection"):
            async with self._pool.connection() as conn:
                yield conn
            return
        conn = await self._pool.getconn()
        try:
            yield conn
        finally:
            await self._pool.putconn(conn)

    async def close(self) -> None:
        pass
