"""AsyncPostgresStore: PostgresStore on psycopg's async connections.

It runs exactly the operations ``PostgresStore`` runs (``_pg_core``), awaited on an
``AsyncConnection`` — its own, the caller's, or one borrowed per call from an
``AsyncConnectionPool`` — so ``AsyncSemanticCache`` does its store work without a
thread hop. ``AsyncSemanticCache(store=PostgresStore(dsn, ...))`` switches to this
store by itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from ._errors import StoreBackendError
from ._pg_connection import (
    AsyncCallerConnection,
    AsyncConnectionSource,
    AsyncOwnedConnection,
    AsyncPoolConnection,
    require_psycopg,
)
from ._pg_core import BATCH, VECTOR_BATCH, Mode, PgCore, _entry, _log
from ._pg_io import PgOp, drive_async
from ._types import StoredEntry

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = ["AsyncPostgresStore"]

_T = TypeVar("_T")


class AsyncPostgresStore(PgCore):
    """The async twin of ``PostgresStore``: same options, same schema, same behaviour;
    every method is a coroutine and ``iter_*`` return async iterators. Give exactly one
    of ``dsn``, ``connection`` (an ``AsyncConnection``, never closed by the store) or
    ``pool`` (an ``AsyncConnectionPool``, never closed by the store)."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        connection: AsyncConnection[Any] | None = None,
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
        super().__init__("AsyncPostgresStore", locals())
        require_psycopg()
        self._source: AsyncConnectionSource
        if dsn is not None:
            self._source = AsyncOwnedConnection(dsn, connect_timeout)
        elif connection is not None:
            self._source = AsyncCallerConnection(connection)
        else:
            self._source = AsyncPoolConnection(pool)

    async def _run(self, op: str, body: PgOp[_T], mode: Mode = "read") -> _T:
        import psycopg

        try:
            async with self._source.borrow() as conn:
                if self._vector_info is not None:
                    self._adapt(conn)
                if mode == "raw" or (mode == "read" and conn.autocommit):
                    return await drive_async(conn, body)
                async with conn.transaction():
                    return await drive_async(conn, body)
        except psycopg.Error as exc:
            raise self._error(op, exc) from exc

    # -- lifecycle --------------------------------------------------------------

    async def open(self, embedder_fingerprint: str, embedder_dim: int) -> None:
        self._prepare_open()
        try:
            await self._run("open (provisioning)", self._op_provision())
            stored = await self._run("open (reading embedder)", self._op_read_embedder())
            if None in stored:
                stored = await self._run(
                    "open (recording embedder)",
                    self._op_record_embedder(embedder_fingerprint, embedder_dim),
                    "write",
                )
            self._check_embedder(stored, embedder_fingerprint, embedder_dim)
            owned = isinstance(self._source, AsyncOwnedConnection)
            await self._run("open (pgvector)", self._op_open_vectors(owned), "raw")
        except BaseException:
            await self._source.close()
            raise
        self._open = True

    async def close(self) -> None:
        if self._open and self._pending:
            try:
                await self._run("close", self._op_flush(), "raw")
            except StoreBackendError as exc:
                _log.warning("AsyncPostgresStore.close could not write access times: %s", exc)
        self._open = False
        self._search = False
        await self._source.close()

    # -- reads ------------------------------------------------------------------

    async def get_by_hash(self, namespace: str, query_hash: str) -> StoredEntry | None:
        self._check()
        op = self._op_fetch_entry("by_hash", [namespace, query_hash])
        return await self._run("get_by_hash", op)

    async def get_by_id(self, id: int) -> StoredEntry | None:
        self._check()
        return await self._run("get_by_id", self._op_fetch_entry("by_id", [id]))

    async def get_many_by_hash(
        self, namespace: str, query_hashes: Sequence[str]
    ) -> dict[str, StoredEntry]:
        self._check()
        return await self._run("get_many_by_hash", self._op_by_hashes(namespace, query_hashes))

    async def count(self, namespace: str | None = None) -> int:
        self._check()
        return await self._run("count", self._op_count(namespace))

    async def list_namespaces(self) -> list[str]:
        self._check()
        return await self._run("list_namespaces", self._op_namespaces())

    async def iter_lru_ids(self, n: int, namespace: str | None = None) -> list[int]:
        self._check()
        return await self._run("iter_lru_ids", self._op_lru(n, namespace), "raw")

    async def _pages(
        self, op: str, name: str, after_id: int, batch: int
    ) -> AsyncIterator[Sequence[Any]]:
        """Keyset pagination: no connection or transaction is held between batches."""
        while True:
            self._check()
            rows = await self._run(op, self._op_page(name, after_id, batch))
            for row in rows:
                yield row
            if len(rows) < batch:
                return
            after_id = rows[-1][0]

    def iter_all(self) -> AsyncIterator[StoredEntry]:
        return self.iter_since(0)

    async def iter_since(self, last_id: int) -> AsyncIterator[StoredEntry]:
        self._check()
        async for row in self._pages("iter_since", "since", last_id, BATCH):
            entry = self._overlay(_entry(row))
            if entry is not None:
                yield entry

    async def iter_vectors(self, after_id: int = 0) -> AsyncIterator[tuple[int, str, bytes]]:
        self._check()
        async for row in self._pages("iter_vectors", "vectors", after_id, VECTOR_BATCH):
            yield row[0], row[1], bytes(row[2])

    async def oldest_created_at(self) -> int | None:
        self._check()
        return await self._run("oldest_created_at", self._op_optional_int("oldest"))

    async def get_namespace_quota(self, namespace: str) -> int | None:
        self._check()
        op = self._op_optional_int("quota_get", [namespace])
        return await self._run("get_namespace_quota", op)

    async def read_version_counter(self) -> int:
        self._check()
        return int(await self._run("read_version_counter", self._op_scalar("version")))

    async def read_meta(self, key: str) -> str | None:
        self._check()
        return await self._run("read_meta", self._op_read_meta(key))

    async def read_counters(self, namespace: str | None = None) -> dict[str, int]:
        self._check()
        return await self._run("read_counters", self._op_counters(namespace))

    async def integrity_check(self) -> bool:
        self._check()
        return await self._run("integrity_check", self._op_integrity())

    # -- writes -----------------------------------------------------------------

    async def insert(self, entry: StoredEntry) -> int:
        self._check()
        id_, flag = await self._run("insert", self._op_insert(entry), "raw")
        if flag is not None:
            await self._adopt([replace(entry, id=id_)])
        return int(id_)

    async def insert_many(self, entries: Sequence[StoredEntry]) -> list[int]:
        self._check()
        if not entries:
            return []
        rows = self._dedupe(entries)
        ids, flag = await self._run("insert_many", self._op_insert_many(rows), "raw")
        if flag is not None:
            await self._adopt([replace(e, id=ids[(e.namespace, e.query_hash)]) for e in rows])
        return [ids[(e.namespace, e.query_hash)] for e in entries]

    async def _adopt(self, written: Sequence[StoredEntry]) -> None:
        op = self._op_adopt_vectors(written)
        self._vec = await self._run("insert (pgvector side table)", op, "raw")
        _log.info("schema %r: keeping the pgvector side table written from now on", self.schema)

    async def update_access(self, id: int, now: int) -> None:
        self._check()
        if self._touch(id, now) or self._flush_due():
            await self._run("update_access", self._op_flush(), "raw")

    async def delete_many(self, ids: Sequence[int]) -> dict[str, int]:
        self._check()
        if not ids:
            return {}
        return await self._run("delete_many", self._op_delete_many(ids), "raw")

    async def delete_by_id(self, id: int) -> bool:
        self._check()
        return await self._run("delete_by_id", self._op_delete("delete_id", [id]), "raw") > 0

    async def delete_expired(self, now: int, namespace: str | None = None) -> int:
        self._check()
        return await self._run("delete_expired", self._op_delete_expired(now, namespace), "raw")

    async def clear_namespace(self, namespace: str) -> int:
        self._check()
        return await self._run("clear_namespace", self._op_delete("clear_ns", [namespace]), "raw")

    async def set_namespace_quota(self, namespace: str, max_entries: int | None) -> None:
        self._check()
        op = self._op_set_quota(namespace, max_entries)
        await self._run("set_namespace_quota", op, "write")

    async def write_meta(self, key: str, value: str) -> None:
        self._check()
        await self._run("write_meta", self._op_fetch("meta_set", [key, value], "none"), "write")

    async def add_counters(self, namespace: str, deltas: Mapping[str, int]) -> None:
        self._check()
        await self._run("add_counters", self._op_add_counters(namespace, deltas), "write")

    # -- pgvector ----------------------------------------------------------------

    async def search(
        self, namespace: str, vector: npt.NDArray[np.float32], *, k: int, now: int
    ) -> list[tuple[StoredEntry, float]]:
        """The ``k`` nearest live entries of ``namespace`` with their cosine similarity,
        best first, in one round trip on an autocommit connection."""
        self._check()
        return await self._run("search", self._op_search(namespace, vector, k, now), "raw")

    async def rebuild_vector_index(self) -> None:
        """``PostgresStore.rebuild_vector_index``, awaited."""
        self._check()
        await self._run("rebuild_vector_index", self._op_rebuild_index(), "raw")
