"""PostgresStore: durable, transactional entries in a Postgres schema of their own.

Embeddings are kept as BYTEA (little-endian float32), the canonical copy. Without
pgvector the cache builds its in-process index from ``iter_vectors``; with
``use_pgvector`` the schema gets a side table of ``vector`` values written in the same
statements as the entries, and the store answers ``search`` itself. Every operation
lives in ``_pg_core`` as a generator of database requests; this module runs them on
sync psycopg connections (``AsyncPostgresStore`` runs the same ones on async ones).
psycopg is imported lazily: ``import mneme`` never needs it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from ._errors import StoreBackendError
from ._pg_connection import (
    CallerConnection,
    ConnectionSource,
    OwnedConnection,
    PoolConnection,
    require_psycopg,
)
from ._pg_core import BATCH, VECTOR_BATCH, Mode, PgCore, _entry, _log
from ._pg_io import PgOp, drive_sync
from ._pg_statements import ITER_VECTORS_SQL
from ._types import StoredEntry

if TYPE_CHECKING:
    from psycopg import Connection

    from ._store_postgres_async import AsyncPostgresStore

__all__ = ["ITER_VECTORS_SQL", "PostgresStore"]

_T = TypeVar("_T")


class PostgresStore(PgCore):
    """Entries in tables under ``schema``, reached through exactly one of ``dsn`` (the
    store opens and owns one autocommit connection), ``connection`` (the caller's,
    never closed) or ``pool`` (a psycopg_pool pool, one connection borrowed per call).

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
        self._dsn = dsn
        self._source: ConnectionSource
        if dsn is not None:
            self._source = OwnedConnection(dsn, connect_timeout)
        elif connection is not None:
            self._source = CallerConnection(connection)
        else:
            self._source = PoolConnection(pool)

    def to_async(self) -> AsyncPostgresStore | None:
        """An ``AsyncPostgresStore`` with the same options on the same DSN, for
        ``AsyncSemanticCache``; None for a caller's connection or pool, which are sync."""
        from ._store_postgres_async import AsyncPostgresStore

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
                    return drive_sync(conn, body)
                with conn.transaction():
                    return drive_sync(conn, body)
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
        self._search = False
        self._source.close()

    # -- reads ------------------------------------------------------------------

    def get_by_hash(self, namespace: str, query_hash: str) -> StoredEntry | None:
        self._check()
        return self._run("get_by_hash", self._op_fetch_entry("by_hash", [namespace, query_hash]))

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

    def _pages(self, op: str, name: str, after_id: int, batch: int) -> Iterator[Sequence[Any]]:
        """Keyset pagination: no connection or transaction is held between batches."""
        while True:
            self._check()
            rows = self._run(op, self._op_page(name, after_id, batch))
            yield from rows
            if len(rows) < batch:
                return
            after_id = rows[-1][0]

    def iter_all(self) -> Iterator[StoredEntry]:
        return self.iter_since(0)

    def iter_since(self, last_id: int) -> Iterator[StoredEntry]:
        self._check()
        pages = self._pages("iter_since", "since", last_id, BATCH)
        return (e for row in pages if (e := self._overlay(_entry(row))) is not None)

    def iter_vectors(self, after_id: int = 0) -> Iterator[tuple[int, str, bytes]]:
        self._check()
        pages = self._pages("iter_vectors", "vectors", after_id, VECTOR_BATCH)
        return ((row[0], row[1], bytes(row[2])) for row in pages)

    def oldest_created_at(self) -> int | None:
        self._check()
        return self._run("oldest_created_at", self._op_optional_int("oldest"))

    def get_namespace_quota(self, namespace: str) -> int | None:
        self._check()
        return self._run("get_namespace_quota", self._op_optional_int("quota_get", [namespace]))

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
        return id_

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
        self._vec = self._run(
            "insert (pgvector side table)", self._op_adopt_vectors(written), "raw"
        )
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
        self._run("set_namespace_quota", self._op_set_quota(namespace, max_entries), "write")

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
