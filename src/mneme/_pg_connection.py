"""Where PostgresStore gets its connections: its own, the caller's, or a pool.

psycopg is imported lazily so that ``import mneme`` works without the extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import StoreBackendError

if TYPE_CHECKING:
    from psycopg import AsyncConnection, Connection

__all__ = [
    "AsyncCallerConnection",
    "AsyncConnectionSource",
    "AsyncOwnedConnection",
    "AsyncPoolConnection",
    "CallerConnection",
    "ConnectionSource",
    "OwnedConnection",
    "PoolConnection",
    "mask_dsn",
    "require_psycopg",
]

_EXTRA_HINT = (
    "PostgresStore requires the optional 'postgres' extra (psycopg, psycopg-pool, "
    "pgvector); install it with: pip install 'mneme[postgres]'"
)


def require_psycopg() -> ModuleType:
    """Import psycopg or explain which extra is missing."""
    try:
        import psycopg
    except ImportError as exc:
        raise StoreBackendError(_EXTRA_HINT) from exc
    return psycopg


_URL_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE)


def mask_dsn(text: str, password: str | None = None) -> str:
    """``text`` with any password in URL or key=value form replaced by ``***``."""
    if password:
        text = text.replace(password, "***")
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _KV_PASSWORD.sub(r"\1***", text)


def _dsn_password(dsn: str) -> str | None:
    from psycopg.conninfo import conninfo_to_dict

    try:
        value = conninfo_to_dict(dsn).get("password")
    except Exception:  # an unparsable DSN fails again, masked, in connect()
        return None
    return str(value) if value else None


class ConnectionSource(Protocol):
    """Lends a connection for one operation."""

    def borrow(self) -> contextlib.AbstractContextManager[Connection[Any]]: ...

    def close(self) -> None: ...


class OwnedConnection:
    """One connection the store opens itself (autocommit), reopened when broken."""

    def __init__(self, dsn: str, connect_timeout: float) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._conn: Connection[Any] | None = None
        self._lock = threading.RLock()

    def connect_args(self) -> tuple[str, dict[str, Any]]:
        """The DSN and keyword arguments to connect with (sync or async)."""
        psycopg = require_psycopg()
        from psycopg.conninfo import conninfo_to_dict

        kwargs: dict[str, Any] = {"autocommit": True}
        try:
            has_timeout = "connect_timeout" in conninfo_to_dict(self._dsn)
        except psycopg.Error:
            has_timeout = False
        if not has_timeout:
            kwargs["connect_timeout"] = max(1, round(self._connect_timeout))
        return self._dsn, kwargs

    def connect_error(self, exc: Exception) -> StoreBackendError:
        """The error for a failed connect: says "connect", never shows the password."""
        password = _dsn_password(self._dsn)
        return StoreBackendError(
            f"could not connect to PostgreSQL at {mask_dsn(self._dsn, password)}: "
            f"{mask_dsn(str(exc).strip(), password)}; check that the server is up and the "
            "DSN (host, port, database, user, password) is right"
        )

    def _connect(self) -> Connection[Any]:
        psycopg = require_psycopg()
        dsn, kwargs = self.connect_args()
        try:
            conn: Connection[Any] = psycopg.connect(dsn, **kwargs)
        except psycopg.Error as exc:
            raise self.connect_error(exc) from exc
        return conn

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Connection[Any]]:
        with self._lock:
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                if conn is not None:
                    conn.close()
                self._conn = conn = self._connect()
            yield conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class CallerConnection:
    """The caller's connection: used as it is, never closed, never reconfigured."""

    def __init__(self, conn: Connection[Any]) -> None:
        self._conn = conn
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Connection[Any]]:
        with self._lock:
            if self._conn.closed:
                raise StoreBackendError(
                    "the connection passed to PostgresStore(connection=...) is closed; "
                    "pass an open one, or use dsn= or pool= so the store can reconnect"
                )
            yield self._conn

    def close(self) -> None:
        pass


class PoolConnection:
    """Borrows from a psycopg_pool pool (or anything with getconn/putconn) per call."""

    def __init__(self, pool: Any) -> None:
        if not (hasattr(pool, "connection") or hasattr(pool, "getconn")):
            raise ValueError("pool must have connection() or getconn()/putconn()")
        self._pool = pool

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Connection[Any]]:
        if hasattr(self._pool, "connection"):
            with self._pool.connection() as conn:
                yield conn
            return
        conn = self._pool.getconn()
        try:
            yield conn
        finally:
            self._pool.putconn(conn)

    def close(self) -> None:
        pass


class AsyncConnectionSource(Protocol):
    """Lends an async connection for one operation."""

    def borrow(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection[Any]]: ...

    async def close(self) -> None: ...


class AsyncOwnedConnection:
    """One ``AsyncConnection`` the store opens itself (autocommit), reopened when
    broken."""

    def __init__(self, dsn: str, connect_timeout: float) -> None:
        self._sync = OwnedConnection(dsn, connect_timeout)
        self._conn: AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> AsyncConnection[Any]:
        psycopg = require_psycopg()
        dsn, kwargs = self._sync.connect_args()
        try:
            conn: AsyncConnection[Any] = await psycopg.AsyncConnection.connect(dsn, **kwargs)
        except psycopg.Error as exc:
            raise self._sync.connect_error(exc) from exc
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


class AsyncCallerConnection:
    """The caller's ``AsyncConnection``: used as it is, never closed."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

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
    """Borrows from a psycopg_pool ``AsyncConnectionPool`` (or anything with async
    getconn/putconn) per call."""

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
