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

import functools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from mneme._errors import StoreBackendError
from mneme._types import Candidates, ProgressFn, ReplicaStatus, StoredEntry
from mneme.stores.postgres.connection import (
    CallerConnection,
    ConnectionSource,
    OwnedConnection,
    PoolConnection,
)
from mneme.stores.postgres.dsn import mask_dsn, require_psycopg
from mneme.stores.postgres.graphs import VectorGraph
from mneme.stores.postgres.operations import (
    BATCH,
    VECTOR_BATCH,
    Mode,
    PgCore,
    _entry,
    _log,
    dedupe_batch,
    op_row,
)
from mneme.stores.postgres.prepared import INVALID_STATEMENT_NAME, plan
from mneme.stores.postgres.replicas import STATUS_SQL, WRITTEN_LSN_SQL, Replica, Router
from mneme.stores.postgres.requests import (
    Atomic,
    CopyIn,
    Execute,
    GetConnection,
    PgOp,
    Pipelined,
    Prepared,
    Request,
    Sleep,
)

if TYPE_CHECKING:
    from psycopg import Connection

    from mneme.stores.postgres.async_store import AsyncPostgresStore

__all__ = ["PostgresStore"]

_T = TypeVar("_T")
_STOP_WAIT_S = 10.0
# How often a read waiting for a replica to replay this store's last write looks again.
_REPLAY_POLL_S = 0.005
# How often the fresh-row pass looks again while another process's pass runs.
_FRESH_POLL_S = 0.5


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
    ``hnsw_ef_construction`` shape the graphs this store builds; ``ef_search`` and
    ``max_scan_tuples`` apply to every search. Each namespace above
    ``exact_search_max_rows`` rows gets a vector index of its own (a partial index built
    concurrently, never blocking writers); smaller ones are searched exactly. Up to
    ``ivfflat_max_rows`` rows that index is IVFFlat, searched through
    ``ivfflat_probes`` of its lists and rebuilt with more lists as the namespace grows;
    above, an HNSW graph (``ivfflat_max_rows=0``: HNSW for every namespace). With
    ``auto_index`` (the default) a store opened from a DSN starts that build in the
    background when a namespace it writes to crosses the threshold;
    ``build_vector_indexes()`` does it on demand and ``vector_index_status()`` shows
    where each namespace stands.
    ``progress`` is called with the progress of the pgvector upgrade that ``open`` runs
    on a schema without the side table (tasks "backfill", "index", "catch-up").

    ``replicas``: streaming replicas of the same database, each a DSN (the store opens
    one connection to it) or a pool. Layer 1 and Layer 2 reads (``get_by_hash``,
    ``get_many_by_hash``, ``get_by_id``, ``search``, ``lookup``) go to them in turn; everything
    else, and every write, to the primary. After this store commits a change its reads
    use a replica only once it has replayed that commit, waiting at most
    ``replica_wait_timeout`` seconds, else the primary. A replica that fails, or lags
    more than ``replica_max_lag`` seconds, is skipped (a warning, and a count in
    ``replica_status``) and tried again after ``replica_retry_interval`` seconds. While
    the primary is unreachable, reads go to the replicas and writes raise
    ``StoreBackendError``; access times and counters wait in memory for it.
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
        hnsw_ef_construction: int = 128,
        ef_search: int = 100,
        max_scan_tuples: int = 20_000,
        exact_search_max_rows: int = 250,
        ivfflat_max_rows: int = 50_000,
        ivfflat_probes: int = 6,
        auto_index: bool = True,
        connect_timeout: float = 10.0,
        progress: ProgressFn | None = None,
        replicas: Sequence[Any] = (),
        replica_max_lag: float = 30.0,
        replica_wait_timeout: float = 0.1,
        replica_retry_interval: float = 5.0,
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
        self._router: Router | None = None
        if replicas:
            self._router = Router(
                [
                    Replica(mask_dsn(r), OwnedConnection(r, connect_timeout))
                    if isinstance(r, str)
                    else Replica(getattr(r, "name", None) or f"pool {i}", PoolConnection(r))
                    for i, r in enumerate(replicas)
                ],
                self._replica_options,
            )
        self._replica_sources = list(replicas)
        self._dsn = dsn
        # Background graph builds: the task (thread) and its connection.
        self._background: dict[Any, OwnedConnection] = {}

    def to_async(self) -> AsyncPostgresStore | None:
        """An ``AsyncPostgresStore`` with the same options on the same DSNs, for
        ``AsyncSemanticCache``; None for a caller's connection or a pool, which
        are sync."""
        from mneme.stores.postgres.async_store import AsyncPostgresStore

        replicas = self._replica_sources
        if self._dsn is None or not all(isinstance(r, str) for r in replicas):
            return None
        return AsyncPostgresStore(self._dsn, replicas=replicas, **self._options)

    def _run(self, op: str, body: PgOp[_T], mode: Mode = "read", *, wrote: bool = False) -> _T:
        """Run an operation on the primary; psycopg errors become StoreBackendError
        (the original chained). ``wrote``: it changes entries (read-your-writes)."""
        import psycopg

        try:
            result = self._attempt(self._source, body, mode, wrote=wrote)
        except psycopg.Error as exc:
            if self._router is not None and _unreachable(exc):
                self._router.primary_failed(exc)
            raise self._error(op, exc) from exc
        except StoreBackendError as exc:
            if self._router is not None and _unreachable(exc):
                self._router.primary_failed(exc)
            raise
        if self._router is not None:
            self._router.primary_answered()
        return result

    def _attempt(
        self, source: ConnectionSource, body: PgOp[_T], mode: Mode, *, wrote: bool = False
    ) -> _T:
        """``body`` on a connection of ``source``; errors propagate as they are."""
        with source.borrow() as conn:
            if self._vector_info is not None:
                self._adapt(conn)
            if mode == "raw" or (mode == "read" and conn.autocommit):
                result = _drive(conn, body)
            else:
                with conn.transaction():
                    result = _drive(conn, body)
            if wrote and self._router is not None:
                self._router.wrote(_written_position(conn))
            return result

    # -- routing reads (stores with replicas) -------------------------------------------

    def _read(
        self,
        op: str,
        make: Callable[[], PgOp[_T]],
        *,
        layer: bool = False,
        mode: Mode = "read",
    ) -> _T:
        """A read: Layer 1/2 reads (``layer``) from a replica that has this store's
        writes, others from the primary; from any replica while the primary is down.
        ``make`` builds the operation again for each server tried."""
        router = self._router
        if router is None:
            return self._run(op, make(), mode)
        import psycopg

        if self._flush_due():
            self._flush_quietly()
        if router.primary_usable():
            if layer:
                replica = self._fresh_replica(router)
                if replica is not None:
                    try:
                        result = self._attempt(replica.source, make(), mode)
                    except (psycopg.Error, StoreBackendError) as exc:
                        router.failed(replica, exc)
                    else:
                        router.answered(replica)
                        return result
            try:
                result = self._attempt(self._source, make(), mode)
            except (psycopg.Error, StoreBackendError) as exc:
                if not _unreachable(exc):
                    if isinstance(exc, StoreBackendError):
                        raise
                    raise self._error(op, exc) from exc
                router.primary_failed(exc)
            else:
                router.primary_answered()
                return result
        return self._read_without_primary(router, op, make, mode)

    def _read_without_primary(
        self, router: Router, op: str, make: Callable[[], PgOp[_T]], mode: Mode
    ) -> _T:
        import psycopg

        last: BaseException | None = None
        for replica in router.rotation() or router.fallback():
            try:
                result = self._attempt(replica.source, make(), mode)
            except (psycopg.Error, StoreBackendError) as exc:
                router.failed(replica, exc)
                last = exc
                continue
            router.answered(replica)
            return result
        raise StoreBackendError(
            f"PostgresStore.{op} failed: the primary and every replica are unreachable"
            + (f" (last error: {str(last).strip()})" if last is not None else "")
        ) from last

    def _fresh_replica(self, router: Router) -> Replica | None:
        """A replica in rotation that has replayed this store's last write, waiting at
        most ``replica_wait_timeout`` for one to get there; None: use the primary."""
        deadline: float | None = None
        while True:
            behind = []
            for replica in router.rotation():
                if router.check_due(replica) and not self._check_replica(replica):
                    continue
                if router.caught_up(replica):
                    return replica
                if replica.standby:
                    behind.append(replica)
            now = time.monotonic()
            if deadline is None:
                deadline = now + router.options.wait_timeout
            if not behind or now >= deadline:
                return None
            time.sleep(min(_REPLAY_POLL_S, deadline - now))

    def _check_replica(self, replica: Replica) -> bool:
        """Read the replica's replay position and lag; True when it may answer."""
        import psycopg

        assert self._router is not None
        try:
            row = self._attempt(replica.source, op_row(STATUS_SQL), "read")
        except (psycopg.Error, StoreBackendError) as exc:
            self._router.failed(replica, exc)
            return False
        return self._router.checked(replica, *row)

    def _flush_quietly(self) -> None:
        """Write pending access times on the primary if it answers; if it does not,
        keep them for later rather than fail the read that triggered the write."""
        assert self._router is not None
        if not self._router.primary_usable():
            return
        try:
            self._run("update_access", self._op_flush(), "raw", wrote=True)
        except StoreBackendError as exc:
            _log.warning("access times kept in memory for a later write: %s", exc)

    def replica_status(self) -> tuple[ReplicaStatus, ...]:
        """Each replica's state, lag (checked now) and counts; empty without replicas."""
        self._check()
        router = self._router
        if router is None:
            return ()
        position = None
        try:
            row = self._run("replica_status", op_row(WRITTEN_LSN_SQL))
            position = None if row is None else int(row[0])
        except StoreBackendError:
            pass  # the primary is down: no byte lag
        for replica in router.replicas:
            self._check_replica(replica)
        return router.status(position)

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
            # wrote: replicas answer only once they have what opening may have created.
            self._run("open (pgvector)", self._op_open_vectors(owned), "raw", wrote=True)
        except BaseException:
            self._close_sources()
            raise
        self._open = True
        self._start_fresh_pass()

    def close(self) -> None:
        if self._open and self._pending:
            try:
                self._run("close", self._op_flush(), "raw")
            except StoreBackendError as exc:
                _log.warning("PostgresStore.close could not write access times: %s", exc)
        if self._open and self._counter_backlog:
            try:
                self._write_held_counters()
            except StoreBackendError as exc:
                _log.warning("PostgresStore.close could not write counters: %s", exc)
        self._open = False
        self._closed = True
        self._search = False
        self._stop_background()
        self._close_sources()

    def _close_sources(self) -> None:
        self._source.close()
        for replica in self._router.replicas if self._router is not None else ():
            replica.source.close()

    def _stop_background(self) -> None:
        """Stop background graph builds (their statements are cancelled on the server):
        a build cut short leaves an invalid index, which the next build redoes."""
        background = list(self._background.items())
        for _, source in background:
            source.cancel()
        for worker, _ in background:
            worker.join(_STOP_WAIT_S)
            if worker.is_alive():
                _log.warning("schema %r: a graph build is still stopping", self.schema)

    # -- reads ------------------------------------------------------------------
    # Layer 1 and 2 reads may go to a replica; with one, pending access times are
    # written to the primary apart from the read (_read), not inside it.

    def get_by_hash(self, namespace: str, query_hash: str) -> StoredEntry | None:
        self._check()
        here = self._router is None
        return self._read(
            "get_by_hash",
            lambda: self._op_fetch_entry("by_hash", [namespace, query_hash], flush=here),
            layer=True,
        )

    def get_by_id(self, id: int) -> StoredEntry | None:
        self._check()
        here = self._router is None
        found = self._read(
            "get_by_id", lambda: self._op_fetch_entry("by_id", [id], flush=here), layer=True
        )
        if found is None and self._router is not None and self._router.primary_usable():
            # A replica may not have replayed another process's new entry yet: the
            # cache drops ids it is told are gone, so ask the primary before saying so.
            found = self._run("get_by_id", self._op_fetch_entry("by_id", [id], False))
        return found

    def get_many_by_hash(
        self, namespace: str, query_hashes: Sequence[str]
    ) -> dict[str, StoredEntry]:
        self._check()
        return self._read(
            "get_many_by_hash", lambda: self._op_by_hashes(namespace, query_hashes), layer=True
        )

    def count(self, namespace: str | None = None) -> int:
        self._check()
        return self._read("count", lambda: self._op_count(namespace))

    def list_namespaces(self) -> list[str]:
        self._check()
        return self._read("list_namespaces", self._op_namespaces)

    def iter_lru_ids(self, n: int, namespace: str | None = None) -> list[int]:
        self._check()
        return self._run("iter_lru_ids", self._op_lru(n, namespace), "raw", wrote=True)

    def _pages(self, op: str, name: str, after_id: int, batch: int) -> Iterator[list[Any]]:
        """Keyset pagination, a batch of rows at a time: no connection or transaction is
        held between batches."""
        while True:
            self._check()
            rows = self._read(op, functools.partial(self._op_page, name, after_id, batch))
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
        return self._read("oldest_created_at", lambda: self._op_optional_int("oldest"))

    def get_namespace_quota(self, namespace: str) -> int | None:
        self._check()
        return self._read(
            "get_namespace_quota", lambda: self._op_optional_int("quota_get", [namespace])
        )

    def read_version_counter(self) -> int:
        self._check()
        return int(self._read("read_version_counter", lambda: self._op_scalar("version")))

    def read_meta(self, key: str) -> str | None:
        self._check()
        return self._read("read_meta", lambda: self._op_read_meta(key))

    def read_counters(self, namespace: str | None = None) -> dict[str, int]:
        self._check()
        totals = self._read("read_counters", lambda: self._op_counters(namespace))
        for name, n in self._held_counters(namespace).items():
            totals[name] = totals.get(name, 0) + n
        return totals

    def integrity_check(self) -> bool:
        self._check()
        return self._read("integrity_check", self._op_integrity)

    # -- writes -----------------------------------------------------------------

    def insert(self, entry: StoredEntry) -> int:
        self._check()
        id_, flag = self._run("insert", self._op_insert(entry), "raw", wrote=True)
        if flag is not None:
            self._adopt([replace(entry, id=id_)])
        self._after_insert({entry.namespace: 1})
        self._start_fresh_pass()
        return int(id_)

    def _after_insert(self, counts: Mapping[str, int]) -> None:
        """Start a background graph build for a namespace that has grown past the
        exact-scan threshold (stores opened from a DSN, with ``auto_index``)."""
        for namespace in self._grown(counts):
            try:
                needed = self._run("graph check", self._op_needs_graph(namespace))
            except StoreBackendError as exc:
                _log.warning("schema %r: could not check namespace size: %s", self.schema, exc)
                continue
            if needed:
                self._graphed.add(namespace)
                self._start_build(namespace)

    def insert_many(self, entries: Sequence[StoredEntry]) -> list[int]:
        self._check()
        if not entries:
            return []
        rows = dedupe_batch(entries)
        op = self._op_insert_many(rows)
        ids, flag = self._run("insert_many", op, "raw", wrote=True)
        return self._inserted(entries, rows, ids, flag)

    def insert_chunks(self, chunks: Iterable[Sequence[StoredEntry]]) -> list[int]:
        """``insert_many`` for entries that come in chunks, in one transaction. On a
        connection the store owns, the next chunk is taken from ``chunks`` (made) while
        the server stores the one before: its entries on a pgvector store, its upsert
        otherwise. Whatever ``chunks`` raises propagates as it is, and nothing of the
        batch is stored."""
        self._check()
        if not self._owned:
            return self.insert_many([e for chunk in chunks for e in chunk])
        feed = self._feed(chunks)
        ids, flag = self._run("insert_many", self._op_insert_bulk(feed), "raw", wrote=True)
        return self._inserted(feed.entries, dedupe_batch(feed.entries), ids, flag)

    def _inserted(
        self,
        entries: Sequence[StoredEntry],
        rows: Sequence[StoredEntry],
        ids: Mapping[tuple[str, str], int],
        flag: Any,
    ) -> list[int]:
        """After a batch insert: adopt a side table another store added, check for
        graphs to build; the ids of ``entries`` in order."""
        if flag is not None:
            self._adopt([replace(e, id=ids[(e.namespace, e.query_hash)]) for e in rows])
        self._after_insert(Counter(e.namespace for e in rows))
        return [ids[(e.namespace, e.query_hash)] for e in entries]

    def _adopt(self, written: Sequence[StoredEntry]) -> None:
        op = self._op_adopt_vectors(written)
        self._vec = self._run("insert (pgvector side table)", op, "raw", wrote=True)
        _log.info("schema %r: keeping the pgvector side table written from now on", self.schema)

    def update_access(self, id: int, now: int) -> None:
        self._check()
        if self._touch(id, now) or self._flush_due():
            if self._router is not None:
                self._flush_quietly()
            else:
                self._run("update_access", self._op_flush(), "raw")

    def delete_many(self, ids: Sequence[int]) -> dict[str, int]:
        self._check()
        if not ids:
            return {}
        return self._run("delete_many", self._op_delete_many(ids), "raw", wrote=True)

    def delete_by_id(self, id: int) -> bool:
        self._check()
        op = self._op_delete("delete_id", [id])
        return self._run("delete_by_id", op, "raw", wrote=True) > 0

    def delete_expired(self, now: int, namespace: str | None = None) -> int:
        self._check()
        op = self._op_delete_expired(now, namespace)
        return self._run("delete_expired", op, "raw", wrote=True)

    def clear_namespace(self, namespace: str) -> int:
        self._check()
        op = self._op_delete("clear_ns", [namespace])
        return self._run("clear_namespace", op, "raw", wrote=True)

    def set_namespace_quota(self, namespace: str, max_entries: int | None) -> None:
        self._check()
        op = self._op_set_quota(namespace, max_entries)
        self._run("set_namespace_quota", op, "write")

    def write_meta(self, key: str, value: str) -> None:
        self._check()
        self._run("write_meta", self._op_fetch("meta_set", [key, value], "none"), "write")

    def add_counters(self, namespace: str, deltas: Mapping[str, int]) -> None:
        """With replicas, counters the primary cannot take now are kept in memory and
        written with a later call (``read_counters`` of this store includes them)."""
        self.add_counters_many({namespace: deltas})

    def add_counters_many(self, deltas: Mapping[str, Mapping[str, int]]) -> None:
        """``add_counters`` for every namespace of ``deltas``, in one statement."""
        self._check()
        if self._router is None:
            self._run("add_counters", self._op_add_counters(deltas), "write")
            return
        for namespace, named in deltas.items():
            self._hold_counters(namespace, named)
        if not self._router.primary_usable():
            return
        try:
            self._write_held_counters()
        except StoreBackendError as exc:
            if not _unreachable(exc):
                # The caller keeps these deltas for its next try; hold only older ones.
                for namespace, named in deltas.items():
                    self._hold_counters(namespace, {name: -n for name, n in named.items()})
                raise
            _log.warning("counters kept in memory for a later write: %s", exc)

    def _write_held_counters(self) -> None:
        backlog = self._take_counters()
        try:
            self._run("add_counters", self._op_add_counters(backlog), "write")
        except BaseException:
            for namespace, deltas in backlog.items():
                self._hold_counters(namespace, deltas)
            raise

    # -- pgvector ----------------------------------------------------------------

    def search(
        self,
        namespace: str,
        vector: npt.NDArray[np.float32],
        *,
        k: int,
        now: int,
        min_similarity: float | None = None,
    ) -> Candidates:
        """The ``k`` nearest live entries of ``namespace`` with their cosine similarity,
        best first, in one round trip on an autocommit connection. Neighbours below
        ``min_similarity`` are left out, their entries never read; the result's
        ``below`` says whether there was one."""
        self._check()
        return self._read(
            "search",
            lambda: self._op_search(namespace, vector, k, now, min_similarity),
            layer=True,
            mode="raw",
        )

    def lookup(
        self,
        namespace: str,
        query_hash: str,
        vector: npt.NDArray[np.float32],
        *,
        k: int,
        now: int,
        min_similarity: float | None = None,
    ) -> tuple[StoredEntry | None, Candidates]:
        """``get_by_hash`` and ``search`` in one statement, one round trip: what a
        cache ``get`` that was given the query's embedding needs."""
        self._check()
        here = self._router is None
        return self._read(
            "lookup",
            lambda: self._op_lookup(
                namespace, query_hash, vector, k, now, min_similarity, flush=here
            ),
            layer=True,
            mode="raw",
        )

    def rebuild_vector_index(self, namespace: str | None = None) -> list[str]:
        """Rebuild the index of ``namespace``, or every namespace's, with ``REINDEX INDEX
        CONCURRENTLY``: after many deletes or replacements, rebuilding and then
        vacuuming costs far less than vacuuming the old graph. Returns the index names
        rebuilt. On a connection that is not autocommit the rebuild runs in a
        transaction and blocks writers meanwhile."""
        self._check()
        op = self._op_rebuild_index(namespace)
        return self._run("rebuild_vector_index", op, "raw")

    def build_vector_indexes(self, progress: ProgressFn | None = None) -> list[str]:
        """Build now, one after another, the index of every namespace above
        ``exact_search_max_rows`` rows that has no valid one (a build that died is
        redone), or whose IVFFlat index it has outgrown (rebuilt beside it); returns the
        namespaces built. Readers and writers are never blocked.
        ``progress`` receives ``Progress("index build", rows done, rows in all, "rows")``."""
        self._check()
        return self._run("build_vector_indexes", self._op_build_graphs(progress), "raw")

    def vector_index_status(self) -> list[VectorGraph]:
        """Every namespace of the side table with its size and where its search runs
        (its own graph, or an exact scan), largest first."""
        self._check()
        return self._run("vector_index_status", self._op_graph_states())

    def _start_build(self, namespace: str) -> None:
        assert self._dsn is not None
        source = OwnedConnection(self._dsn, self._options["connect_timeout"])
        worker = threading.Thread(
            target=self._build_in_background,
            args=(namespace, source),
            name=f"mneme-graph-{self.schema}",
            daemon=True,
        )
        self._background[worker] = source
        worker.start()

    def _start_fresh_pass(self) -> None:
        """Start the background pass that moves fresh rows into their graphs, when some
        are waiting and it is not running (stores opened from a DSN)."""
        with self._fresh_lock:
            if not self._fresh_wanted or self._fresh_pass is not None or self._dsn is None:
                return
            if self._closed:  # a write racing a close starts nothing
                return
            source = OwnedConnection(self._dsn, self._options["connect_timeout"])
            worker = threading.Thread(
                target=self._move_fresh_in_background,
                args=(source,),
                name=f"mneme-fresh-{self.schema}",
                daemon=True,
            )
            self._background[worker] = source
            self._fresh_pass = worker
        worker.start()

    def _move_fresh_in_background(self, source: OwnedConnection) -> None:
        """Move fresh rows into their graphs, a batch per transaction, on a connection of
        its own, until none are left and no write has asked for more; while another
        process's pass holds the schema's lock, look again now and then."""
        import psycopg

        ended = False
        try:
            with source.borrow() as conn:
                while not self._closed:
                    with self._fresh_lock:
                        self._fresh_wanted = False
                    moved = _drive(conn, self._op_move_fresh())
                    if moved is None:
                        time.sleep(_FRESH_POLL_S)
                        continue
                    if moved == 0:
                        with self._fresh_lock:
                            if not self._fresh_wanted:
                                self._fresh_pass = None
                                ended = True
                                return
        except (psycopg.Error, StoreBackendError) as exc:
            if not self._closed:  # a close cancels the batch under way: nothing failed
                _log.warning(
                    "schema %r: moving fresh rows into graphs failed: %s", self.schema, exc
                )
        finally:
            if not ended:
                with self._fresh_lock:
                    self._fresh_pass = None
            source.close()
            self._background.pop(threading.current_thread(), None)

    def _build_in_background(self, namespace: str, source: OwnedConnection) -> None:
        """Build one graph on a connection of its own, so the store's own connection
        stays free, once bulk loads into the store pause; failures are logged and the
        build is tried again later."""
        import psycopg

        try:
            while (pause := self._load_pause()) > 0 and not self._closed:
                time.sleep(min(pause, 0.2))
            if self._closed:
                return
            with source.borrow() as conn:
                self._adapt(conn)
                if not _drive(conn, self._op_build_graph(namespace, True)):
                    self._graphed.discard(namespace)  # another build was under way: later
        except (psycopg.Error, StoreBackendError) as exc:
            self._graphed.discard(namespace)
            _log.warning(
                "schema %r: background graph build for namespace %r failed: %s",
                self.schema,
                namespace,
                exc,
            )
        finally:
            source.close()
            self._background.pop(threading.current_thread(), None)


# -- the driver -----------------------------------------------------------------


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the server cannot be reached (connect refused, connection
    lost, shutting down, pool exhausted) rather than that a statement failed."""
    import psycopg

    if isinstance(exc, StoreBackendError):
        exc = exc.__cause__ if exc.__cause__ is not None else exc
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _written_position(conn: Connection[Any]) -> int | None:
    """The primary's WAL position right after a commit on ``conn``: at or past that
    commit. None when the commit is still to come (inside a caller's transaction) or
    the position cannot be read."""
    import psycopg
    from psycopg import pq

    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute(WRITTEN_LSN_SQL)
            row = cur.fetchone()
    except psycopg.Error:
        return None
    return None if row is None else int(row[0])


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


def _prepared(conn: Connection[Any], request: Prepared) -> list[Any]:
    """A ``Prepared`` request: prepared once per connection under the store's own name,
    then Bind/Execute with parameters encoded by ``prepared``; a cursor's prepared
    statement when a parameter is of another kind."""
    from psycopg import errors, pq
    from psycopg.generators import execute

    pgconn = conn.pgconn
    with conn.lock:
        for attempt in range(2):
            call = plan(conn, request.query, request.params)
            if call is None:
                break
            if call.evict is not None:
                pgconn.send_query(b"DEALLOCATE " + call.evict)
                conn.wait(execute(pgconn))  # an error: it was gone already
            if call.text is not None:
                pgconn.send_prepare(call.name, call.text, call.types)
                (result,) = conn.wait(execute(pgconn))
                if result.status != pq.ExecStatus.COMMAND_OK:
                    raise errors.error_from_result(result, encoding=conn.info.encoding)
                call.prepared()
            pgconn.send_query_prepared(call.name, call.values, [1] * len(call.values), 1)
            *_, result = conn.wait(execute(pgconn))
            if result.status == pq.ExecStatus.TUPLES_OK:
                return call.rows(conn, result)
            state = result.error_field(pq.DiagnosticField.SQLSTATE)
            if attempt == 0 and state == INVALID_STATEMENT_NAME.encode():
                call.forget()  # the connection's statements are gone: prepare again
                continue
            raise errors.error_from_result(result, encoding=conn.info.encoding)
    search = Execute(request.query, request.params, "all", binary=True, prepare=True)
    rows: list[Any] = _perform(conn, search)
    return rows


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
                done = None if request.meanwhile is None else request.meanwhile()
            rows = cursors[request.rows_of].fetchall()
            return rows if request.meanwhile is None else (rows, done)
        finally:
            for cur in cursors:
                cur.close()
    if isinstance(request, Sleep):
        time.sleep(request.seconds)
        return None
    if isinstance(request, GetConnection):
        return conn
    if isinstance(request, Prepared):
        return _prepared(conn, request)
    if isinstance(request, CopyIn):
        from psycopg.copy import LibpqWriter

        with conn.cursor() as cur:
            # With work to do meanwhile, each piece is flushed before the next: the
            # server then holds every row when the client turns to that work.
            flushed = None
            if request.meanwhile is not None:
                flushed = LibpqWriter(cur, flush_threshold=0)
            with cur.copy(request.statement, writer=flushed) as copy:
                if isinstance(request.data, bytes):
                    copy.write(request.data)
                else:
                    for piece in request.data:
                        copy.write(piece)
                if request.meanwhile is not None:
                    request.meanwhile()
        return None
    from psycopg.types import TypeInfo

    return TypeInfo.fetch(conn, request.name)
