# Generated from async_store.py by scripts/unasync.py: edit that file, then run
# `make generate`. `make lint` fails when this file is stale.
"""PostgresStore: durable, transactional entries in a Postgres schema of their own.

Embeddings are kept as BYTEA (little-endian float32), the canonical copy. Without
pgvector the cache builds its in-process index from ``iter_vectors``; with
``use_pgvector`` the schema gets a side table of ``vector`` values written in the same
statements as the entries, and the store answers ``search`` itself. Every operation
lives in ``operations`` as a generator of database requests (``requests``); this
module's driver performs them on a psycopg ``Connection`` lent by a connection
source (``connection``). psycopg is imported lazily: ``import mneme`` never needs it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from mneme._errors import StoreBackendError
from mneme._types import StoredEntry
from mneme.stores.postgres.connection import (
    CallerConnection,
    ConnectionSource,
    OwnedConnection,
    PoolConnection,
)
from mneme.stores.postgres.dsn import require_psycopg
from mneme.stores.postgres.operations import BATCH, VECTOR_BATCH, Mode, PgCore, _entry, _log
from mneme.stores.postgres.requests import (
    Atomic,
    Execute,
    GetConnection,
    PgOp,
    Pipelined,
    Request,
    Sleep,
)

if TYPE_CHECKING:
    from psycopg import Connection

    from mneme.stores.postgres.async_store import AsyncPostgresStore

__all__ = ["PostgresStore"]

_T = TypeVar("_T")


class PostgresStore(PgCore):
    """Entries in tables under ``schema``, reached through exactly one of ``dsn`` (the
    store opens and owns one autocommit ``Connection``), ``connection`` (the
    caller's ``Connection``, never closed) or ``pool`` (a psycopg_pool
    ``ConnectionPool``, one connection borrowed per call, never closed).

    Nothing touches the network before ``open``. ``update_access`` calls are coalesced
    in memory and written in one statement: inside the next write, before
    ``iter_lru_ids``, at the first lookup or touch a second after the oldest pending
    one, and at ``close``. Reads through this store already see them.

    ``use_pgvector``: True answers ``search`` in the database (pgvector HNSW index in a
    side table; ``StoreBackendError`` when the server or role cannot provide pgvector);
    "auto" does so when it can and otherwise warns and keeps the in-process path; False
    (the default) keeps the in-process path. A schema that has the side table is kept
    written by every store, whatever its ``use_pgvector``. ``hnsw_m`` and
    ``hnsw_ef_construction`` shape the index when this store builds it; ``ef_search``
    and ``max_scan_tuples`` apply per search transaction; namespaces of at most
    ``exact_search_max_rows`` rows are searched exactly instead of through the index.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        connection: Connection[Any] | None = None,
        pool: Any = None,
        schema: str = "mneme",
        use_pgvector: bool | Literal["auto"] = False,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        ef_search: int = 100,
        max_scan_tuples: int = 20_000,
        exact_search_max_rows: int = 2_000,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__("PostgresStore", locals())
        require_psycopg()
        self._source: ConnectionSource
        if dsn is not None:
            self._source = OwnedConnection(dsn, connect_timeout)
        elif connection is not None:
            self._source = CallerConnection(connection)
        else:
            self._source = PoolConnection(pool)
        self._dsn = dsn

    def to_async(self) -> AsyncPostgresStore | None:
        """An ``AsyncPostgresStore`` with the same options on the same DSN, for
        ``AsyncSemanticCache``; None for a caller's connection or pool, which are sync."""
        from mneme.stores.postgres.async_store import AsyncPostgresStore

        if self._dsn is None:
            return None
        return AsyncPostgresStore(self._dsn, **self._options)

    def _run(self, op: str, body: PgOp[_T], mode: Mode = "read") -> _T:
        """Run an operation on a borrowed connection; psycopg errors become
        StoreBackendError (the original chained)."""
        import psycopg

        try:
            with self._source.borrow() as conn:
                if self._vector_info is not None:
                    self._adapt(conn)
                if mode == "raw" or (mode == "read" and conn.autocommit):
                    return _drive(conn, body)
                with conn.transaction():
                    return _drive(conn, body)
        except psycopg.Error as exc:
            raise self._error(op, exc) from exc

    # -- lifecycle --------------------------------------------------------------

    def open(self, embedder_fingerprint: str, embedder_dim: int) -> None:
        self._prepare_open()
        try:
            self._run("open (provisioning)", self._op_provision())
            stored = self._run("open (reading embedder)", self._op_read_embedder())
            if None in stored:
                stored = self._run(
                    "open (recording embedder)",
                    self._op_record_embedder(embedder_fingerprint, embedder_dim),
                    "write",
                )
            self._check_embedder(stored, embedder_fingerprint, embedder_dim)
            owned = isinstance(self._source, OwnedConnection)
            self._run("open (pgvector)", self._op_open_vectors(owned), "raw")
        except BaseException:
            self._source.close()
            raise
        self._open = True

    def close(self) -> None:
        if self._open and self._pending:
            try:
                self._run("close", self._op_flush(), "raw")
            except StoreBackendError as exc:
                _log.warning("PostgresStore.close could not write access times: %s", exc)
        self._open = False
        self._closed = True
        self._search = False
        self._source.close()

    # -- reads ------------------------------------------------------------------

    def get_by_hash(self, namespace: str, query_hash: str) -> StoredEntry | None:
        self._check()
        op = self._op_fetch_entry("by_hash", [namespace, query_hash])
        return self._run("get_by_hash", op)

    def get_by_id(self, id: int) -> StoredEntry | None:
        self._check()
        return self._run("get_by_id", self._op_fetch_entry("by_id", [id]))

    def get_many_by_hash(
        self, namespace: str, query_hashes: Sequence[str]
    ) -> dict[str, StoredEntry]:
        self._check()
        return self._run("get_many_by_hash", self._op_by_hashes(namespace, query_hashes))

    def count(self, namespace: str | None = None) -> int:
        self._check()
        return self._run("count", self._op_count(namespace))

    def list_namespaces(self) -> list[str]:
        self._check()
        return self._run("list_namespaces", self._op_namespaces())

    def iter_lru_ids(self, n: int, namespace: str | None = None) -> list[int]:
        self._check()
        return self._run("iter_lru_ids", self._op_lru(n, namespace), "raw")

    def _pages(self, op: str, name: str, after_id: int, batch: int) -> Iterator[list[Any]]:
        """Keyset pagination, a batch of rows at a time: no connection or transaction is
        held between batches."""
        while True:
            self._check()
            rows = self._run(op, self._op_page(name, after_id, batch))
            yield rows
            if len(rows) < batch:
                return
            after_id = rows[-1][0]

    def iter_all(self) -> Iterator[StoredEntry]:
        return self.iter_since(0)

    # The async iter_* are async generators (nothing runs before the first item is
    # asked for); the sync ones check eagerly and return a generator.

    def iter_since(self, last_id: int) -> Iterator[StoredEntry]:
        self._check()
        pages = self._pages("iter_since", "since", last_id, BATCH)
        entries = (
            e for rows in pages for row in rows if (e := self._overlay(_entry(row))) is not None
        )
        return entries

    def iter_vectors(self, after_id: int = 0) -> Iterator[tuple[int, str, bytes]]:
        self._check()
        pages = self._pages("iter_vectors", "vectors", after_id, VECTOR_BATCH)
        vectors = ((row[0], row[1], bytes(row[2])) for rows in pages for row in rows)
        return vectors

    def oldest_created_at(self) -> int | None:
        self._check()
        return self._run("oldest_created_at", self._op_optional_int("oldest"))

    def get_namespace_quota(self, namespace: str) -> int | None:
        self._check()
        op = self._op_optional_int("quota_get", [namespace])
        return self._run("get_namespace_quota", op)

    def read_version_counter(self) -> int:
        self._check()
        return int(self._run("read_version_counter", self._op_scalar("version")))

    def read_meta(self, key: str) -> str | None:
        self._check()
        return self._run("read_meta", self._op_read_meta(key))

    def read_counters(self, namespace: str | None = None) -> dict[str, int]:
        self._check()
        return self._run("read_counters", self._op_counters(namespace))

    def integrity_check(self) -> bool:
        self._check()
        return self._run("integrity_check", self._op_integrity())

    # -- writes -----------------------------------------------------------------

    def insert(self, entry: StoredEntry) -> int:
        self._check()
        id_, flag = self._run("insert", self._op_insert(entry), "raw")
        if flag is not None:
            self._adopt([replace(entry, id=id_)])
        return int(id_)

    def insert_many(self, entries: Sequence[StoredEntry]) -> list[int]:
        self._check()
        if not entries:
            return []
        rows = self._dedupe(entries)
        ids, flag = self._run("insert_many", self._op_insert_many(rows), "raw")
        if flag is not None:
            self._adopt([replace(e, id=ids[(e.namespace, e.query_hash)]) for e in rows])
        return [ids[(e.namespace, e.query_hash)] for e in entries]

    def _adopt(self, written: Sequence[StoredEntry]) -> None:
        op = self._op_adopt_vectors(written)
        self._vec = self._run("insert (pgvector side table)", op, "raw")
        _log.info("schema %r: keeping the pgvector side table written from now on", self.schema)

    def update_access(self, id: int, now: int) -> None:
        self._check()
        if self._touch(id, now) or self._flush_due():
            self._run("update_access", self._op_flush(), "raw")

    def delete_many(self, ids: Sequence[int]) -> dict[str, int]:
        self._check()
        if not ids:
            return {}
        return self._run("delete_many", self._op_delete_many(ids), "raw")

    def delete_by_id(self, id: int) -> bool:
        self._check()
        return self._run("delete_by_id", self._op_delete("delete_id", [id]), "raw") > 0

    def delete_expired(self, now: int, namespace: str | None = None) -> int:
        self._check()
        return self._run("delete_expired", self._op_delete_expired(now, namespace), "raw")

    def clear_namespace(self, namespace: str) -> int:
        self._check()
        return self._run("clear_namespace", self._op_delete("clear_ns", [namespace]), "raw")

    def set_namespace_quota(self, namespace: str, max_entries: int | None) -> None:
        self._check()
        op = self._op_set_quota(namespace, max_entries)
        self._run("set_namespace_quota", op, "write")

    def write_meta(self, key: str, value: str) -> None:
        self._check()
        self._run("write_meta", self._op_fetch("meta_set", [key, value], "none"), "write")

    def add_counters(self, namespace: str, deltas: Mapping[str, int]) -> None:
        self._check()
        self._run("add_counters", self._op_add_counters(namespace, deltas), "write")

    # -- pgvector ----------------------------------------------------------------

    def search(
        self, namespace: str, vector: npt.NDArray[np.float32], *, k: int, now: int
    ) -> list[tuple[StoredEntry, float]]:
        """The ``k`` nearest live entries of ``namespace`` with their cosine similarity,
        best first, in one round trip on an autocommit connection."""
        self._check()
        return self._run("search", self._op_search(namespace, vector, k, now), "raw")

    def rebuild_vector_index(self) -> None:
        """Rebuild the HNSW index (``REINDEX INDEX CONCURRENTLY``): after many deletes
        or replacements, rebuilding and then vacuuming costs far less than vacuuming
        the old graph. On a connection that is not autocommit the rebuild runs in a
        transaction and blocks writers meanwhile."""
        self._check()
        self._run("rebuild_vector_index", self._op_rebuild_index(), "raw")


# -- the driver -----------------------------------------------------------------


def _drive(conn: Connection[Any], op: PgOp[_T]) -> _T:
    """Run ``op`` on ``conn``: perform each request it yields and send the result back
    in, or throw the error in."""
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
            send = _perform(conn, request)
        except Exception as exc:
            error = exc


def _perform(conn: Connection[Any], request: Request) -> Any:
    if isinstance(request, Execute):
        with conn.cursor(binary=request.binary) as cur:
            cur.execute(request.query, request.params, prepare=request.prepare)
            if request.fetch == "one":
                return cur.fetchone()
            if request.fetch == "all":
                return cur.fetchall()
            if request.fetch == "rowcount":
                return cur.rowcount
            return None
    if isinstance(request, Atomic):
        with conn.transaction():
            return _drive(conn, request.body)
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
