# Generated from async_connection.py by scripts/unasync.py: edit that file, then run
# `make generate`. `make lint` fails when this file is stale.
"""Where a Postgres store gets its connections: its own, the caller's, or a pool.

psycopg is imported lazily so that ``import mneme`` works without the extra.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from mneme._errors import StoreBackendError
from mneme.stores.postgres.dsn import connect_args, connect_error, require_psycopg

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = [
    "CallerConnection",
    "ConnectionSource",
    "OwnedConnection",
    "PoolConnection",
]


class ConnectionSource(Protocol):
    """Lends a connection for one operation."""

    def borrow(self) -> contextlib.AbstractContextManager[Connection[Any]]: ...

    def close(self) -> None: ...


# Prepared statements a connection the store owns keeps (psycopg's cache; each holds a
# plan in the server process, a few tens of kB).
PREPARED_MAX = 512


class OwnedConnection:
    """One ``Connection`` the store opens itself (autocommit), reopened when
    broken."""

    def __init__(self, dsn: str, connect_timeout: float) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._conn: Connection[Any] | None = None
        self._lock = threading.RLock()

    def _connect(self) -> Connection[Any]:
        psycopg = require_psycopg()
        dsn, kwargs = connect_args(self._dsn, self._connect_timeout)
        try:
            conn: Connection[Any] = psycopg.Connection.connect(dsn, **kwargs)
        except psycopg.Error as exc:
            raise connect_error(self._dsn, exc) from exc
        # Searches are prepared per namespace (two statements each): psycopg's default of
        # 100 would have 50 busy namespaces evict and re-plan statements on every call.
        conn.prepared_max = PREPARED_MAX
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

    def cancel(self) -> None:
        """Ask the server to stop the statement this connection is running: safe from
        another thread, and nothing happens when none is running."""
        conn = self._conn
        if conn is not None and not conn.closed:
            with contextlib.suppress(Exception):
                conn.cancel()


class CallerConnection:
    """The caller's ``Connection``: used as it is, never closed, never
    reconfigured."""

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
    """Borrows one connection per call from a psycopg_pool ``ConnectionPool``, or
    from anything of the same kind with ``connection()`` or ``getconn()``/``putconn()``."""

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
