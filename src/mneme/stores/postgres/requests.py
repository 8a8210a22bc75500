"""The database requests a Postgres store operation yields.

Every operation of ``PgCore`` is written once, as a generator of these requests; each
store has a driver (``_drive`` in ``store`` and ``async_store``) that performs them on
its psycopg connection, with calls in one and awaits in the other.

A request is sent into the connection and its result (rows, a row, a row count, the
connection itself) is sent back into the generator; a psycopg error is thrown into the
generator at the ``yield`` so an operation can handle it (retry, clean up) or let it
propagate to the store, which wraps it in ``StoreBackendError``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

__all__ = [
    "Atomic",
    "Execute",
    "execute",
    "fetch_all",
    "fetch_row",
    "fetch_value",
    "FetchTypeInfo",
    "GetConnection",
    "PgOp",
    "Pipelined",
    "Prepared",
    "Request",
    "Sleep",
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
    rows of the statement at ``rows_of``. With ``meanwhile``, call it on the client
    once the statements are sent, while the server runs them, and send back (rows,
    what it returned)."""

    statements: Sequence[Execute]
    rows_of: int
    meanwhile: Callable[[], Any] | None = None


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


@dataclass(frozen=True, slots=True)
class CopyIn:
    """``COPY ... FROM STDIN (FORMAT BINARY)`` of ``data``: rows already encoded, from
    the binary COPY signature on (see ``copy_rows``), whole or as pieces written one
    after the other (a large chunk's data is never joined into one buffer).

    ``meanwhile``: client work done once every piece has reached the server and
    before the COPY is ended. A binary COPY stores its rows 1,000 at a time (the
    server counts no bytes for binary rows), so a COPY of 1,000 rows is stored while
    that work runs, instead of after the end; what it raises aborts the COPY."""

    statement: Any
    data: bytes | Iterable[bytes]
    meanwhile: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """Run ``query`` (bytes, with ``%(name)s`` placeholders) as a statement prepared
    under a name of the store's own and sent through libpq (see ``prepared``); send
    back all its rows, loaded as a binary cursor would. For the search of a connection
    the store owns: in autocommit mode, with no transaction of a caller's."""

    query: bytes
    params: Mapping[str, Any]


Request = Execute | Atomic | Pipelined | Sleep | GetConnection | FetchTypeInfo | CopyIn | Prepared
PgOp = Generator[Request, Any, _T]


# One statement as an operation of its own, e.g. for ``Atomic``.
def execute(query: Any, params: Any = None) -> PgOp[None]:
    yield Execute(query, params)


def fetch_row(query: Any, params: Any = None) -> PgOp[Any]:
    """The first row, or None."""
    row = yield Execute(query, params, "one")
    return row


def fetch_value(query: Any, params: Any = None) -> PgOp[Any]:
    """The first column of the first row, or None."""
    row = yield Execute(query, params, "one")
    return None if row is None else row[0]


def fetch_all(query: Any, params: Any = None) -> PgOp[list[Any]]:
    rows: list[Any] = yield Execute(query, params, "all")
    return rows
