"""PostgresStore: durable, transactional entries in a Postgres schema of their own.

Embeddings are kept as BYTEA (little-endian float32), the canonical copy. Without
pgvector the cache builds its in-process index from ``iter_vectors``; with
``use_pgvector`` the schema gets a side table of ``vector`` values written in the same
statements as the entries, and the store answers ``search`` itself (``_pg_vector``).
psycopg is imported lazily: ``import mneme`` never needs it.

Concurrency: every transaction that changes ``entries`` first locks the
``version_counter`` row, so writers from any number of processes queue on one row
instead of deadlocking on each other's entry rows; reads never wait.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from ._errors import CacheClosedError, CheckpointError, StoreBackendError
from ._pg_connection import (
    CallerConnection,
    ConnectionSource,
    OwnedConnection,
    PoolConnection,
    require_psycopg,
)
from ._pg_schema import load_migrations, provision
from ._pg_statements import ITER_VECTORS_SQL, STATEMENTS, compose
from ._pg_upgrade import (
    VectorSchemaState,
    ensure_extension,
    read_state,
    upgrade,
)
from ._pg_vector import (
    ITERATIVE_SCANS_SINCE,
    HnswOptions,
    VectorStatements,
    index_kind,
    parse_version,
    run_search,
    side_vector,
    side_vectors,
)
from ._store import COUNTER_NAMES
from ._store_memory import check_embedder
from ._types import StoredEntry

if TYPE_CHECKING:
    from psycopg import Connection, Cursor
    from psycopg.sql import Composed
    from psycopg.types import TypeInfo

__all__ = ["ITER_VECTORS_SQL", "PostgresStore"]

_log = logging.getLogger("mneme.postgres")
_T = TypeVar("_T")

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BATCH = 2_000
_VECTOR_BATCH = 10_000
_FLUSH_AFTER_S = 1.0
_FLUSH_AFTER_N = 1_000
# Rows per statement of a large insert_many (one transaction): bounds client memory.
_INSERT_CHUNK = 5_000


def _batch_columns(rows: Sequence[StoredEntry]) -> list[list[Any]]:
    return [
        [e.namespace for e in rows],
        [e.query_hash for e in rows],
        [e.query for e in rows],
        [e.response for e in rows],
        [e.embedding for e in rows],
        [None if e.metadata is None else json.dumps(e.metadata) for e in rows],
        [e.created_at for e in rows],
        [e.last_accessed_at for e in rows],
        [e.ttl for e in rows],
        [e.access_count for e in rows],
    ]


def _write_side_rows(
    conn: Connection[Any], stmts: VectorStatements, entries: Sequence[StoredEntry]
) -> None:
    """Upsert the side rows of entries written without them."""
    for i in range(0, len(entries), _INSERT_CHUNK):
        chunk = entries[i : i + _INSERT_CHUNK]
        params = [
            [e.id for e in chunk],
            [e.namespace for e in chunk],
            [None if e.ttl is None else e.created_at + e.ttl for e in chunk],
            side_vectors([e.embedding for e in chunk], stmts.dim),
        ]
        with conn.transaction():
            conn.execute(stmts.sql["side_upsert"], params)


def _entry(row: Sequence[Any]) -> StoredEntry:
    return StoredEntry(
        id=row[0],
        namespace=row[1],
        query_hash=row[2],
        query=row[3],
        response=row[4],
        embedding=bytes(row[5]),
        metadata=row[6],
        created_at=row[7],
        last_accessed_at=row[8],
        ttl=row[9],
        access_count=row[10],
    )


class PostgresStore:
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

    backend_label = "postgres"
    index_label = "pgvector"
    schema_version = 1

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
        ef_search: int = 40,
        max_scan_tuples: int = 20_000,
        exact_search_max_rows: int = 2_000,
        connect_timeout: float = 10.0,
    ) -> None:
        if sum(source is not None for source in (dsn, connection, pool)) != 1:
            raise ValueError("PostgresStore needs exactly one of dsn, connection or pool")
        if not isinstance(schema, str) or len(schema) > 63 or not _SCHEMA_NAME.match(schema):
            raise ValueError(
                f"schema must be alphanumeric or underscore, start with a letter or "
                f"underscore and be at most 63 characters: {schema!r}"
            )
        if use_pgvector not in (True, False, "auto"):
            raise ValueError(f"use_pgvector must be True, False or 'auto', got {use_pgvector!r}")
        self._hnsw = HnswOptions(
            m=hnsw_m,
            ef_construction=hnsw_ef_construction,
            ef_search=ef_search,
            max_scan_tuples=max_scan_tuples,
            exact_search_max_rows=exact_search_max_rows,
        )
        require_psycopg()
        self.schema = schema
        self._use_pgvector = use_pgvector
        self._source: ConnectionSource
        if dsn is not None:
            self._source = OwnedConnection(dsn, connect_timeout)
        elif connection is not None:
            self._source = CallerConnection(connection)
        else:
            self._source = PoolConnection(pool)
        self._sql: dict[str, Composed] = {}
        self._open = False
        # id -> (last now, touches) of update_access calls not yet written.
        self._pending: dict[int, tuple[int, int]] = {}
        self._pending_since = 0.0
        self._pending_lock = threading.Lock()
        # pgvector: the side-table statements when this store keeps the side table
        # written (always, once the schema has it), the vector type to register on
        # connections, and whether this store answers search.
        self._vec: VectorStatements | None = None
        self._vector_info: TypeInfo | None = None
        self._search = False
        self._iterative = False
        self._dim = 0

    @property
    def vector_search_enabled(self) -> bool:
        """True when open with pgvector active: the cache then calls ``search``."""
        return self._open and self._search

    # -- plumbing ---------------------------------------------------------------

    def _check(self) -> None:
        if not self._open:
            raise CacheClosedError("PostgresStore is not open")

    def _run(
        self,
        op: str,
        body: Callable[[Connection[Any]], _T],
        *,
        write: bool = False,
        raw: bool = False,
    ) -> _T:
        """Run ``body`` on a borrowed connection; psycopg errors become StoreBackendError.

        Writes, and anything on a connection that is not autocommit, run inside
        ``conn.transaction()``: a top-level transaction, or a savepoint when the
        caller's own connection is already in one. ``raw`` bodies manage their own
        transactions.
        """
        import psycopg

        try:
            with self._source.borrow() as conn:
                if self._vector_info is not None:
                    self._adapt(conn)
                if raw or (not write and conn.autocommit):
                    return body(conn)
                with conn.transaction():
                    return body(conn)
        except psycopg.Error as exc:
            raise StoreBackendError(f"PostgresStore.{op} failed: {str(exc).strip()}") from exc

    def _write(self, op: str, body: Callable[[Cursor[Any]], tuple[_T, bool]]) -> _T:
        """One transaction: lock the counter, write pending touches, run ``body``, and
        bump the counter when ``body`` reports a change."""
        pending = self._take_pending()

        def txn(conn: Connection[Any]) -> _T:
            with conn.cursor() as cur:
                cur.execute(self._sql["lock"])
                self._flush_with(cur, pending)
                result, changed = body(cur)
                if changed:
                    cur.execute(self._sql["bump"])
                return result

        try:
            return self._run(op, txn, write=True)
        except BaseException:
            self._restore_pending(pending)
            raise

    def _adapt(self, conn: Connection[Any]) -> None:
        """Register pgvector's adapters on a connection once (a type adapter, not
        session state; the type's oid was looked up at open, so no round trip)."""
        from pgvector.psycopg.vector import register_vector_info

        info = self._vector_info
        if info is not None and conn.adapters.types.get(info.oid) is None:
            register_vector_info(conn, info)

    def _take_pending(self) -> dict[int, tuple[int, int]]:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
            return pending

    def _restore_pending(self, pending: dict[int, tuple[int, int]]) -> None:
        with self._pending_lock:
            for id_, (t, n) in pending.items():
                newer = self._pending.get(id_)
                self._pending[id_] = (newer[0], newer[1] + n) if newer else (t, n)
            if pending and not self._pending_since:
                self._pending_since = time.monotonic()

    def _flush_with(self, cur: Cursor[Any], pending: dict[int, tuple[int, int]]) -> None:
        if pending:
            ids = list(pending)
            cur.execute(
                self._sql["flush"],
                [ids, [pending[i][0] for i in ids], [pending[i][1] for i in ids]],
            )

    def _flush(self, op: str) -> None:
        if self._pending:
            self._write(op, lambda cur: (None, False))

    def _overlay(self, entry: StoredEntry | None) -> StoredEntry | None:
        """Show this process's not-yet-written touches on an entry it reads."""
        if entry is None or not self._pending:
            return entry
        with self._pending_lock:
            touch = self._pending.get(entry.id)
        if touch is None:
            return entry
        return replace(
            entry,
            last_accessed_at=max(entry.last_accessed_at, touch[0]),
            access_count=entry.access_count + touch[1],
        )

    # -- lifecycle --------------------------------------------------------------

    def open(self, embedder_fingerprint: str, embedder_dim: int) -> None:
        self._sql = {name: compose(text, self.schema) for name, text in STATEMENTS.items()}
        migrations = load_migrations()
        try:
            self._run("open (provisioning)", lambda conn: provision(conn, self.schema, migrations))
            stored = self._run("open (reading embedder)", self._read_embedder)
            if None in stored:
                stored = self._run(
                    "open (recording embedder)",
                    lambda conn: self._record_embedder(conn, embedder_fingerprint, embedder_dim),
                    write=True,
                )
            fp, dim = stored
            check_embedder(
                fp,
                int(dim) if dim is not None else None,
                embedder_fingerprint,
                embedder_dim,
                f"PostgreSQL schema {self.schema!r}",
            )
            self._dim = int(embedder_dim)
            self._run("open (pgvector)", self._open_vectors, raw=True)
        except BaseException:
            self._source.close()
            raise
        self._open = True

    def _open_vectors(self, conn: Connection[Any]) -> None:
        """Decide, from the arguments and what the schema says, whether this store
        searches, keeps the side table written, or neither; upgrade when asked to."""
        self._vec, self._vector_info, self._search = None, None, False
        with conn.transaction():
            state: VectorSchemaState = read_state(conn, self.schema)
        want = self._use_pgvector
        version = ""
        if want is not False:
            try:
                kind = index_kind(self._dim)
                version = ensure_extension(conn, state)
            except StoreBackendError as exc:
                if want is True:
                    raise
                message = f"PostgresStore(use_pgvector='auto') falls back to plain storage: {exc}"
                _log.warning("%s", message)
                warnings.warn(message, RuntimeWarning, stacklevel=4)
                want = False
        if want is False and state.flag_index is None:
            return
        if state.flag_index is not None:
            kind = state.flag_index
            if state.flag_dim != self._dim:
                raise StoreBackendError(
                    f"schema {self.schema!r} has a pgvector side table of dimension "
                    f"{state.flag_dim}, but the embedder has {self._dim}"
                )
        stmts = VectorStatements(self.schema, self._dim, kind)
        self._fetch_vector_type(conn)
        if want is not False:
            if not (state.flag_index is not None and state.index_valid):
                upgrade(
                    conn,
                    self.schema,
                    stmts,
                    self._hnsw,
                    owned_connection=isinstance(self._source, OwnedConnection),
                )
            self._iterative = parse_version(version) >= ITERATIVE_SCANS_SINCE
            if not self._iterative:
                _log.warning(
                    "pgvector %s has no iterative index scans: small namespaces in a large "
                    "table may lose recall; upgrade to pgvector 0.8.4 or later",
                    version,
                )
            self._search = True
        self._vec = stmts

    def _fetch_vector_type(self, conn: Connection[Any]) -> None:
        from psycopg.types import TypeInfo

        with conn.transaction():
            info = TypeInfo.fetch(conn, "vector")
        if info is None:
            raise StoreBackendError(f"schema {self.schema!r}: the vector type is missing")
        self._vector_info = info
        self._adapt(conn)

    def _read_embedder(self, conn: Connection[Any]) -> tuple[str | None, str | None]:
        values = []
        for key in ("embedder_fingerprint", "embedder_dim"):
            row = conn.execute(self._sql["meta_get"], [key]).fetchone()
            values.append(None if row is None else str(row[0]))
        return values[0], values[1]

    def _record_embedder(
        self, conn: Connection[Any], fingerprint: str, dim: int
    ) -> tuple[str | None, str | None]:
        # DO NOTHING: a concurrent opener may have recorded its embedder first.
        conn.execute(self._sql["meta_default"], ["embedder_fingerprint", fingerprint])
        conn.execute(self._sql["meta_default"], ["embedder_dim", str(dim)])
        return self._read_embedder(conn)

    def close(self) -> None:
        if self._open and self._pending:
            try:
                self._flush("close")
            except StoreBackendError as exc:
                _log.warning("PostgresStore.close could not write access times: %s", exc)
        self._open = False
        self._search = False
        self._source.close()

    # -- reads ------------------------------------------------------------------

    def _maybe_flush(self) -> None:
        if self._pending and time.monotonic() - self._pending_since > _FLUSH_AFTER_S:
            self._flush("update_access")

    def _fetch_entry(self, op: str, name: str, params: Sequence[Any]) -> StoredEntry | None:
        self._check()
        self._maybe_flush()
        row = self._run(op, lambda conn: conn.execute(self._sql[name], params).fetchone())
        return self._overlay(None if row is None else _entry(row))

    def get_by_hash(self, namespace: str, query_hash: str) -> StoredEntry | None:
        return self._fetch_entry("get_by_hash", "by_hash", [namespace, query_hash])

    def get_by_id(self, id: int) -> StoredEntry | None:
        return self._fetch_entry("get_by_id", "by_id", [id])

    def _scalar(self, op: str, name: str, params: Sequence[Any] = ()) -> Any:
        self._check()
        row = self._run(op, lambda conn: conn.execute(self._sql[name], params).fetchone())
        return None if row is None else row[0]

    def count(self, namespace: str | None = None) -> int:
        if namespace is None:
            return int(self._scalar("count", "count"))
        return int(self._scalar("count", "count_ns", [namespace]))

    def list_namespaces(self) -> list[str]:
        self._check()
        rows = self._run("list_namespaces", lambda c: c.execute(self._sql["namespaces"]).fetchall())
        return sorted(r[0] for r in rows)  # Python order, not the database collation

    def iter_lru_ids(self, n: int, namespace: str | None = None) -> list[int]:
        self._check()
        self._flush("iter_lru_ids")
        if n <= 0:
            return []
        name, params = ("lru", [n]) if namespace is None else ("lru_ns", [namespace, n])
        rows = self._run("iter_lru_ids", lambda c: c.execute(self._sql[name], params).fetchall())
        return [r[0] for r in rows]

    def _pages(self, op: str, name: str, after_id: int, batch: int) -> Iterator[Sequence[Any]]:
        """Keyset pagination: no connection or transaction is held between batches."""

        def page(conn: Connection[Any], after: int) -> list[Any]:
            with conn.cursor(binary=True) as cur:
                return cur.execute(self._sql[name], [after, batch]).fetchall()

        while True:
            self._check()
            rows = self._run(op, functools.partial(page, after=after_id))
            yield from rows
            if len(rows) < batch:
                return
            after_id = rows[-1][0]

    def iter_all(self) -> Iterator[StoredEntry]:
        return self.iter_since(0)

    def iter_since(self, last_id: int) -> Iterator[StoredEntry]:
        self._check()
        pages = self._pages("iter_since", "since", last_id, _BATCH)
        return (e for row in pages if (e := self._overlay(_entry(row))) is not None)

    def iter_vectors(self, after_id: int = 0) -> Iterator[tuple[int, str, bytes]]:
        self._check()
        pages = self._pages("iter_vectors", "vectors", after_id, _VECTOR_BATCH)
        return ((row[0], row[1], bytes(row[2])) for row in pages)

    # -- writes -----------------------------------------------------------------

    def insert(self, entry: StoredEntry) -> int:
        from psycopg.types.json import Jsonb

        self._check()
        metadata = None if entry.metadata is None else Jsonb(entry.metadata)
        params: list[Any] = [
            entry.namespace,
            entry.query_hash,
            entry.query,
            entry.response,
            entry.embedding,
            metadata,
            entry.created_at,
            entry.last_accessed_at,
            entry.ttl,
            entry.access_count,
        ]
        vec = self._vec

        def upsert(cur: Cursor[Any]) -> tuple[tuple[int, Any], bool]:
            if vec is None:
                row = cur.execute(self._sql["insert"], params).fetchone()
            else:
                side = side_vector(entry.embedding, vec.dim)
                row = cur.execute(vec.sql["insert"], [*params, side]).fetchone()
            if row is None:
                raise StoreBackendError(
                    f"PostgresStore.insert: the version_counter row is missing from schema "
                    f"{self.schema!r}; the schema was damaged outside mneme"
                )
            # The statement bumped the counter itself.
            return (int(row[0]), row[1] if vec is None else None), False

        id_, flag = self._upsert("insert", upsert)
        if flag is not None:
            self._adopt_vectors([replace(entry, id=id_)])
        return id_

    def insert_many(self, entries: Sequence[StoredEntry]) -> list[int]:
        self._check()
        if not entries:
            return []
        # One row per key (ON CONFLICT cannot touch a row twice in a statement): the
        # later entry's values, in the position of the key's first appearance, so new
        # ids are handed out in input order.
        latest: dict[tuple[str, str], StoredEntry] = {}
        for e in entries:
            latest[(e.namespace, e.query_hash)] = e
        rows = list(latest.values())
        chunks = [rows[i : i + _INSERT_CHUNK] for i in range(0, len(rows), _INSERT_CHUNK)]
        vec = self._vec

        def upsert(cur: Cursor[Any]) -> tuple[tuple[dict[tuple[str, str], int], Any], bool]:
            ids: dict[tuple[str, str], int] = {}
            flag = None
            for chunk in chunks:  # parameters built per chunk: memory stays bounded
                if vec is None:
                    cur.execute(self._sql["insert_many"], _batch_columns(chunk))
                else:
                    sides = side_vectors([e.embedding for e in chunk], vec.dim)
                    cur.execute(vec.sql["insert_many"], [*_batch_columns(chunk), sides])
                for row in cur.fetchall():
                    ids[(row[0], row[1])] = int(row[2])
                    if vec is None and row[3] is not None:
                        flag = row[3]
            return (ids, flag), False

        if len(chunks) == 1:
            ids, flag = self._upsert("insert_many", upsert)
        else:  # several statements (each bumps the counter): one explicit transaction
            ids, flag = self._write("insert_many", upsert)
        if flag is not None:
            self._adopt_vectors([replace(e, id=ids[(e.namespace, e.query_hash)]) for e in rows])
        return [ids[(e.namespace, e.query_hash)] for e in entries]

    def _adopt_vectors(self, written: Sequence[StoredEntry]) -> None:
        """The schema got its vector side table after this store opened: keep it written
        from now on, starting with the entries this store just wrote."""

        def adopt(conn: Connection[Any]) -> VectorStatements:
            with conn.transaction():
                state = read_state(conn, self.schema)
            if state.flag_index is None or state.flag_dim != self._dim:
                raise StoreBackendError(
                    f"schema {self.schema!r}: the pgvector side table is not usable "
                    f"(dimension {state.flag_dim}, embedder {self._dim})"
                )
            stmts = VectorStatements(self.schema, self._dim, state.flag_index)
            self._fetch_vector_type(conn)
            _write_side_rows(conn, stmts, written)
            return stmts

        self._vec = self._run("insert (pgvector side table)", adopt, raw=True)
        _log.info("schema %r: keeping the pgvector side table written from now on", self.schema)

    def get_many_by_hash(
        self, namespace: str, query_hashes: Sequence[str]
    ) -> dict[str, StoredEntry]:
        self._check()
        if not query_hashes:
            return {}
        params = [namespace, list(dict.fromkeys(query_hashes))]
        rows = self._run(
            "get_many_by_hash", lambda c: c.execute(self._sql["by_hashes"], params).fetchall()
        )
        found = (self._overlay(_entry(row)) for row in rows)
        return {e.query_hash: e for e in found if e is not None}

    def delete_many(self, ids: Sequence[int]) -> dict[str, int]:
        self._check()
        if not ids:
            return {}
        params = [list(dict.fromkeys(ids))]

        def delete(cur: Cursor[Any]) -> tuple[dict[str, int], bool]:
            counts = {ns: int(n) for ns, n in cur.execute(self._sql["delete_ids"], params)}
            return counts, bool(counts)

        return self._write("delete_many", delete)

    def oldest_created_at(self) -> int | None:
        value = self._scalar("oldest_created_at", "oldest")
        return None if value is None else int(value)

    def _upsert(self, op: str, body: Callable[[Cursor[Any]], tuple[_T, bool]]) -> _T:
        """Run an upsert statement that bumps the counter itself."""
        if self._pending:
            # Touches must be written after the counter lock, inside the same transaction.
            return self._write(op, body)

        # Nothing to flush: the one statement is the whole transaction.
        def single(conn: Connection[Any]) -> _T:
            with conn.cursor() as cur:
                return body(cur)[0]

        return self._run(op, single)

    def update_access(self, id: int, now: int) -> None:
        self._check()
        with self._pending_lock:
            if not self._pending:
                self._pending_since = time.monotonic()
            touch = self._pending.get(id)
            self._pending[id] = (now, 1 + (touch[1] if touch else 0))
            full = len(self._pending) >= _FLUSH_AFTER_N
        if full:
            self._flush("update_access")
        else:
            self._maybe_flush()

    def _delete(self, op: str, name: str, params: Sequence[Any]) -> int:
        self._check()

        def delete(cur: Cursor[Any]) -> tuple[int, bool]:
            cur.execute(self._sql[name], params)
            return cur.rowcount, cur.rowcount > 0

        return self._write(op, delete)

    def delete_by_id(self, id: int) -> bool:
        return self._delete("delete_by_id", "delete_id", [id]) > 0

    def delete_expired(self, now: int, namespace: str | None = None) -> int:
        if namespace is None:
            return self._delete("delete_expired", "delete_expired", [now])
        return self._delete("delete_expired", "delete_expired_ns", [now, namespace])

    def clear_namespace(self, namespace: str) -> int:
        return self._delete("clear_namespace", "clear_ns", [namespace])

    def _execute(self, op: str, name: str, params: Sequence[Any]) -> None:
        self._check()
        self._run(op, lambda conn: conn.execute(self._sql[name], params), write=True)

    def set_namespace_quota(self, namespace: str, max_entries: int | None) -> None:
        if max_entries is None:
            self._execute("set_namespace_quota", "quota_del", [namespace])
        else:
            self._execute("set_namespace_quota", "quota_set", [namespace, max_entries])

    def get_namespace_quota(self, namespace: str) -> int | None:
        value = self._scalar("get_namespace_quota", "quota_get", [namespace])
        return None if value is None else int(value)

    def read_version_counter(self) -> int:
        return int(self._scalar("read_version_counter", "version"))

    def read_meta(self, key: str) -> str | None:
        value = self._scalar("read_meta", "meta_get", [key])
        return None if value is None else str(value)

    def write_meta(self, key: str, value: str) -> None:
        self._execute("write_meta", "meta_set", [key, value])

    def add_counters(self, namespace: str, deltas: Mapping[str, int]) -> None:
        self._check()
        if deltas:
            names = list(deltas)
            self._execute(
                "add_counters", "counters_add", [namespace, names, [deltas[n] for n in names]]
            )

    def read_counters(self, namespace: str | None = None) -> dict[str, int]:
        self._check()
        name, params = ("counters", []) if namespace is None else ("counters_ns", [namespace])
        rows = self._run("read_counters", lambda c: c.execute(self._sql[name], params).fetchall())
        totals = dict.fromkeys(COUNTER_NAMES, 0)
        for counter, value in rows:
            totals[counter] = totals.get(counter, 0) + int(value)
        return totals

    def integrity_check(self) -> bool:
        """Cheap structural check: the five tables, a valid unique Layer-1 index, a
        numeric version counter and a complete, consistent schema_meta."""
        self._check()
        row = self._run(
            "integrity_check",
            lambda c: c.execute(self._sql["integrity"], [self.schema, self.schema]).fetchone(),
        )
        if row is None:
            return False
        tables, index_ok, counter, fingerprint, dim, version = row
        return bool(
            tables == 5
            and index_ok
            and counter is not None
            and counter.isdigit()
            and fingerprint
            and dim is not None
            and dim.isdigit()
            and version == str(self.schema_version)
        )

    # -- pgvector ----------------------------------------------------------------

    def search(
        self, namespace: str, vector: npt.NDArray[np.float32], *, k: int, now: int
    ) -> list[tuple[StoredEntry, float]]:
        """The ``k`` nearest live entries of ``namespace`` with their cosine similarity,
        best first, in one round trip on an autocommit connection."""
        self._check()
        vec = self._vec
        if not self._search or vec is None:
            raise StoreBackendError(
                "PostgresStore.search needs use_pgvector=True (or 'auto' with pgvector "
                "available on the server)"
            )
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if k <= 0 or query.shape != (vec.dim,) or not np.isfinite(query).all():
            return []
        if not np.any(query):
            return []  # cosine is undefined for a zero vector
        exact = self._hnsw.exact_search_max_rows
        params = {
            "ns": namespace,
            "q": query,
            "cap": exact + 1,
            "exact": exact,
            "now": now,
            "k": k,
        }
        settings = [str(self._hnsw.ef_search)]
        if self._iterative:
            settings.append(str(self._hnsw.max_scan_tuples))
        rows = self._run(
            "search",
            lambda conn: run_search(conn, vec, settings, self._iterative, params),
            raw=True,
        )
        found = []
        for row in rows:
            entry = self._overlay(_entry(row))
            if entry is not None:
                found.append((entry, min(1.0, max(-1.0, float(row[11])))))
        return found

    def rebuild_vector_index(self) -> None:
        """Rebuild the HNSW index (``REINDEX INDEX CONCURRENTLY``): after many deletes
        or replacements, rebuilding and then vacuuming costs far less than vacuuming
        the old graph. On a connection that is not autocommit the rebuild runs in a
        transaction and blocks writers meanwhile."""
        from psycopg import sql

        self._check()
        if self._vec is None:
            raise StoreBackendError(
                f"schema {self.schema!r} has no pgvector index; open with use_pgvector=True"
            )
        index = sql.SQL("{}.{}").format(
            sql.Identifier(self.schema), sql.Identifier("idx_entry_vectors_hnsw")
        )

        def rebuild(conn: Connection[Any]) -> None:
            started = time.monotonic()
            if conn.autocommit:
                conn.execute(sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(index))
            else:
                _log.warning(
                    "schema %r: rebuilding the HNSW index inside a transaction; writers "
                    "wait until it is done",
                    self.schema,
                )
                with conn.transaction():
                    conn.execute(sql.SQL("REINDEX INDEX {}").format(index))
            _log.info(
                "schema %r: HNSW index rebuilt in %.1f s", self.schema, time.monotonic() - started
            )

        self._run("rebuild_vector_index", rebuild, raw=True)

    def snapshot_to(self, dest_path: str) -> None:
        raise CheckpointError(
            "PostgresStore does not snapshot itself; back the schema up with "
            f"pg_dump --schema={self.schema} (and restore it with pg_restore or psql)"
        )

    @classmethod
    def restore_from(cls, source_path: str, dest_path: str) -> None:
        raise CheckpointError(
            "PostgresStore does not restore snapshots; restore a pg_dump of the schema "
            "with pg_restore (or psql for a plain-format dump)"
        )
