"""PostgresStore's operations are written once, as generators that yield database
requests; a sync driver runs them on a psycopg ``Connection`` and an async driver on an
``AsyncConnection``. Neither copy of the store holds any SQL logic of its own.

A request is sent into the connection and its result (rows, a row, a row count, the
connection itself) is sent back into the generator; a psycopg error is thrown into the
generator at the ``yield`` so an operation can handle it (retry, clean up) or let it
propagate to the store, which wraps it in ``StoreBackendError``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from psycopg import AsyncConnection, Connection

__all__ = [
    "Atomic",
    "Execute",
    "FetchTypeInfo",
    "GetConnection",
    "PgOp",
    "Pipelined",
    "Sleep",
    "drive_async",
    "drive_sync",
]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Execute:
    """Run one statement; send back according to ``fetch``."""

    query: Any
    params: Any = None
    fetch: Literal["none", "one", "all", "rowcount"] = "none"
    binary: bool = False
    prepare: bool | None = None


@dataclass(frozen=True, slots=True)
class Atomic:
    """Run ``body`` inside ``conn.transaction()`` (a savepoint when one is open)."""

    body: Generator[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class Pipelined:
    """Send ``statements`` in pipeline mode (one network round trip); send back the
    rows of the statement at ``rows_of``."""

    statements: Sequence[Execute]
    rows_of: int


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class GetConnection:
    """Send back the connection itself, to read ``autocommit`` or ``info``."""


@dataclass(frozen=True, slots=True)
class FetchTypeInfo:
    """Send back ``psycopg.types.TypeInfo.fetch(conn, name)``."""

    name: str


Request = Execute | Atomic | Pipelined | Sleep | GetConnection | FetchTypeInfo
PgOp = Generator[Request, Any, _T]


def _result(cur: Any, fetch: str) -> Any:
    if fetch == "one":
        return cur.fetchone()
    if fetch == "all":
        return cur.fetchall()
    if fetch == "rowcount":
        return cur.rowcount
    return None


def drive_sync(conn: Connection[Any], op: PgOp[_T]) -> _T:
    """Run ``op`` on a sync connection."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            request = op.throw(error) if error is not None else op.send(send)
        except StopIteration as stop:
            result: _T = stop.value
            return result
        send, error = None, None
        try:
            send = _perform_sync(conn, request)
        except Exception as exc:
            error = exc


def _perform_sync(conn: Connection[Any], request: Request) -> Any:
    if isinstance(request, Execute):
        with conn.cursor(binary=request.binary) as cur:
            cur.execute(request.query, request.params, prepare=request.prepare)
            return _result(cur, request.fetch)
    if isinstance(request, Atomic):
        with conn.transaction():
            return drive_sync(conn, request.body)
    if isinstance(request, Pipelined):
        cursors = [conn.cursor(binary=s.binary) for s in request.statements]
        try:
            with conn.pipeline():
                for cur, s in zip(cursors, request.statements, strict=True):
                    cur.execute(s.query, s.params, prepare=s.prepare)
            return cursors[request.rows_of].fetchall()
        finally:
            for cur in cursors:
                cur.close()
    if isinstance(request, Sleep):
        time.sleep(request.seconds)
        return None
    if isinstance(request, GetConnection):
        return conn
    from psycopg.types import TypeInfo

    return TypeInfo.fetch(conn, request.name)


async def drive_async(conn: AsyncConnection[Any], op: PgOp[_T]) -> _T:
    """Run ``op`` on an async connection: the same operation, awaited."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            request = op.throw(error) if error is not None else op.send(send)
        except StopIteration as stop:
            result: _T = stop.value
            return result
        send, error = None, None
        try:
            send = await _perform_async(conn, request)
        except Exception as exc:
            error = exc


async def _perform_async(conn: AsyncConnection[Any], request: Request) -> Any:
    if isinstance(request, Execute):
        async with conn.cursor(binary=request.binary) as cur:
            await cur.execute(request.query, request.params, prepare=request.prepare)
            if request.fetch == "one":
                return await cur.fetchone()
            if request.fetch == "all":
                return await cur.fetchall()
            return _result(cur, request.fetch)
    if isinstance(request, Atomic):
        async with conn.transaction():
            return await drive_async(conn, request.body)
    if isinstance(request, Pipelined):
        cursors = [conn.cursor(binary=s.binary) for s in request.statements]
        try:
            async with conn.pipeline():
                for cur, s in zip(cursors, request.statements, strict=True):
                    await cur.execute(s.query, s.params, prepare=s.prepare)
            return await cursors[request.rows_of].fetchall()
        finally:
            for cur in cursors:
                await cur.close()
    if isinstance(request, Sleep):
        await asyncio.sleep(request.seconds)
        return None
    if isinstance(request, GetConnection):
        return conn
    from psycopg.types import TypeInfo

    return await TypeInfo.fetch(conn, request.name)
