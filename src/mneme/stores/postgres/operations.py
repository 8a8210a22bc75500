"""What PostgresStore and AsyncPostgresStore share: options, state, and every operation
as a generator of database requests (see ``requests``). The two stores only borrow
connections and drive these generators, one with calls and one with awaits.

Concurrency: every transaction that changes ``entries`` first locks its connection's
row of ``version_slots`` (picked by the server process id) and adds one to it before it
commits; the version is the sum of the slots. Writers on different connections do not
wait for each other's counter, only for entry rows they both change; the rare deadlock
between two such transactions is retried. Reads never wait.
"""

from __future__ import annotations

import decimal
import functools
import itertools
import json
import logging
import math
import random
import re
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from mneme._errors import CacheClosedError, CheckpointError, StoreBackendError
from mneme._policy import FLAT_JSON_TYPES
from mneme._types import Candidates, ProgressFn, StoredEntry
from mneme.stores.common import check_embedder, dedupe_batch
from mneme.stores.postgres.copy_rows import staged_rows
from mneme.stores.postgres.direct import DirectChunk
from mneme.stores.postgres.feed import ChunkFeed
from mneme.stores.postgres.graphs import (
    VectorGraph,
    build_graph,
    build_missing,
    builder_lock,
    graph_states,
    move_fresh,
    namespace_graph_check,
    release_builder_lock,
    retire_legacy_index,
    with_cleanup,
)
from mneme.stores.postgres.replicas import ReplicaOptions
from mneme.stores.postgres.requests import (
    Atomic,
    CopyIn,
    Execute,
    FetchTypeInfo,
    GetConnection,
    PgOp,
    Pipelined,
    Sleep,
    execute,
    fetch_all,
    fetch_value,
)
from mneme.stores.postgres.schema import keep_rows_inline, load_migrations, provision
from mneme.stores.postgres.statements import STATEMENTS, VERSION_SLOTS, compose
from mneme.stores.postgres.upgrade import VectorSchemaState, ensure_extension, read_state, upgrade
from mneme.stores.postgres.vector import (
    ITERATIVE_SCANS_SINCE,
    LEGACY_INDEX_NAME,
    WELL_BUILT,
    HnswOptions,
    VectorStatements,
    index_kind,
    index_state,
    parse_version,
    run_search,
    side_vector,
    side_vectors,
)
from mneme.stores.protocol import COUNTER_NAMES

if TYPE_CHECKING:
    from psycopg.sql import Composed
    from psycopg.types import TypeInfo

__all__ = [
    "Mode",
    "PgCore",
    "dedupe_batch",
    "load_rows",
    "metadata_json",
    "op_row",
    "stage_rows",
]

_log = logging.getLogger("mneme.postgres")
_T = TypeVar("_T")

Mode = Literal["read", "write", "raw"]
"""How a store runs an operation on its borrowed connection: "read" in a transaction
only when the connection is not autocommit, "write" always in one, "raw" as it is (the
operation manages its own transactions)."""

SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BATCH = 2_000
VECTOR_BATCH = 10_000
_FLUSH_AFTER_S = 1.0
_FLUSH_AFTER_N = 1_000
# Attempts of a write transaction that the server aborted to break a deadlock, and the
# first pause's upper bound before running it again (doubled each time, drawn at random:
# two writers that retry at once in step would meet again).
_DEADLOCK_ATTEMPTS = 6
_DEADLOCK_PAUSE_S = 0.005
# Rows per statement of a large insert_many (one transaction): bounds client memory.
_INSERT_CHUNK = 5_000
# From this many rows, insert_many on an owned connection goes through COPY.
_COPY_AT_LEAST = 256
# Rows per COPY and upsert of that path, while the next chunk is encoded. At 100k x
# 384, batches of 10,000: 1,000 rows ~8,600 rows/s, 2,000 ~7,800, 5,000 ~7,200.
_STAGE_CHUNK = 1_000
# Staged bytes per chunk at most: the staging table lives in the session's temp_buffers
# (8 MB by default) and, beyond them, is written to disk and read back. At dim 1536
# with side vectors (12 kB a row) 1,000 rows spilled; chunks of ~470 rows do not.
_STAGE_BYTES = 6 << 20
# Rows per chunk of a direct load (pgvector store): a COPY of entries and one of side
# rows. At 100k x 1536, 1,000 and 2,000 load alike; the staging table is not involved.
_DIRECT_CHUNK = 1_000
_BIGINT_MAX = (1 << 63) - 1
# A background graph build waits until the store has loaded no batch of _COPY_AT_LEAST
# rows or more for this long: built during a load, the graph would turn every later row
# of the load into an HNSW insert (milliseconds each) instead of a row of a COPY.
LOAD_QUIET_S = 10.0
# How often a searching store reads its graphs' sizes again.
_GRAPH_SIZES_EVERY_S = 60.0
# A namespace's size is checked for a graph every this many rows written to it.
_CHECK_EVERY = 500
# A single write into a namespace with a graph leaves its row fresh (out of the graph,
# searched exactly); a background pass moves fresh rows in, this many per transaction.
_FRESH_BATCH = 32
# Rows this process has left fresh and the pass has not moved yet, at most: beyond, a
# write pays its graph insertion itself, so that exact reads of fresh rows stay short.
FRESH_BACKLOG_MAX = 1_000
# Access times held in memory at most, when writes keep failing.
_PENDING_MAX = 100_000


# Compact, as ``metadata_json`` writes: the same text for what has no float in it.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def metadata_json(value: Any) -> str:
    """JSON text whose numbers come back from jsonb as they went in.

    jsonb keeps numbers as decimals, so a float written the usual way as ``1e+16``
    would come back as the integer 10000000000000000 (and ``1e+23`` as a different
    number). Floats are written instead as their exact decimal expansion with a
    fractional part, which jsonb keeps digit for digit. The usual metadata (a flat
    object of texts, integers, booleans and nulls) has no float to rewrite: it goes
    through the C encoder, which writes the same text in about 60% of the time.
    """
    if type(value) is dict and all(
        type(k) is str and type(v) in FLAT_JSON_TYPES for k, v in value.items()
    ):
        return _COMPACT_JSON.encode(value)
    return _metadata_json(value)


def _metadata_json(value: Any) -> str:
    if isinstance(value, float):
        text = repr(value)
        if "e" in text or "E" in text:
            text = format(decimal.Decimal(value), "f")
        return text if "." in text else text + ".0"
    if isinstance(value, dict):
        items = (json.dumps(str(k)) + ":" + _metadata_json(v) for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_metadata_json(v) for v in value) + "]"
    return json.dumps(value)


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


def _values(entry: StoredEntry, metadata: Any) -> list[Any]:
    """An entry's column values in the order of the insert statements."""
    return [
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


def _json_or_none(metadata: Any) -> str | None:
    return None if metadata is None else metadata_json(metadata)


def load_rows(dim: int, vectors: bool) -> int:
    """Rows per chunk of a bulk load: direct on a pgvector store, else staged."""
    return _DIRECT_CHUNK if vectors else stage_rows(dim, False)


def stage_rows(dim: int, vectors: bool) -> int:
    """Rows per chunk of a staged load: ``_STAGE_CHUNK``, fewer for large vectors."""
    row = 4 * dim * (2 if vectors else 1) + 1_024  # embedding (and side vector), the rest
    return max(100, min(_STAGE_CHUNK, _STAGE_BYTES // row))


def _copyable(chunk: Sequence[StoredEntry]) -> bool:
    """Whether every side row of ``chunk`` can be encoded for COPY: its expiry time
    (created_at + ttl, computed by the server in an upsert) fits a BIGINT."""
    return all(e.ttl is None or e.created_at + e.ttl <= _BIGINT_MAX for e in chunk)


def _op_copy_chunk(
    vec: VectorStatements,
    table: str,
    chunk: DirectChunk,
    pending: Iterator[Sequence[StoredEntry]],
    taken: list[Sequence[StoredEntry]],
) -> PgOp[DirectChunk | None]:
    """``chunk``'s entries, then its side rows, each as one COPY of data made before;
    while the server stores each, the client works on what comes next (see
    ``direct``). The next chunk taken from ``pending`` is put in ``taken``; returned
    with its entry data made, or None when there is none or COPY cannot carry it."""

    def take_next() -> None:
        got = next(pending, None)
        if got is not None:
            taken.append(got)
        chunk.encode_sides()

    yield CopyIn(vec.sql["load_entries"], chunk.entry_data, take_next)
    following = None
    if taken and _copyable(taken[0]):
        following = DirectChunk(taken[0], vec.dim, _json_or_none)
    make_following = None
    if following is not None:
        got = yield Execute(vec.sql["load_ids"], [table, len(following.entries)], "all")
        make_following = functools.partial(following.encode_entries, _load_ids(got))
    yield CopyIn(vec.sql["load_sides"], chunk.side_data, make_following)
    return following


def _load_ids(rows: Iterable[Sequence[Any]]) -> list[int]:
    """The ids ``load_ids`` took, ascending: given to a chunk's entries in their order."""
    return sorted(int(row[0]) for row in rows)


def _encode_staged(rows: Sequence[StoredEntry], dim: int, first_ord: int) -> bytes:
    """COPY data of a chunk of staged rows, with side vectors when ``dim`` is set."""
    metadata = [_json_or_none(e.metadata) for e in rows]
    sides = side_vectors([e.embedding for e in rows], dim) if dim else None
    return staged_rows(rows, metadata, sides, dim, first_ord)


def _ids_and_flag(
    rows: Iterable[Sequence[Any]], plain: bool
) -> tuple[dict[tuple[str, str], int], Any]:
    """Ids by (namespace, query_hash) of an upsert's rows, and on a plain store the
    flag its statement returns (set when the schema has a pgvector side table)."""
    ids: dict[tuple[str, str], int] = {}
    flag = None
    for row in rows:
        ids[(row[0], row[1])] = int(row[2])
        if plain and row[3] is not None:
            flag = row[3]
    return ids, flag


def _batch_columns(rows: Sequence[StoredEntry]) -> list[list[Any]]:
    """Column arrays of a batch (for unnest), metadata as JSON text."""
    values = (_values(e, None if e.metadata is None else metadata_json(e.metadata)) for e in rows)
    return [list(column) for column in zip(*values, strict=True)]


STORE_OPTIONS = (
    "schema",
    "use_pgvector",
    "hnsw_m",
    "hnsw_ef_construction",
    "ef_search",
    "max_scan_tuples",
    "exact_search_max_rows",
    "ivfflat_max_rows",
    "ivfflat_probes",
    "auto_index",
    "connect_timeout",
    "progress",
    "replica_max_lag",
    "replica_wait_timeout",
    "replica_retry_interval",
)


class PgCore:
    """Options, state and operations of a Postgres store (sync or async)."""

    backend_label = "postgres"
    index_label = "pgvector"
    schema_version = 2

    def __init__(self, owner: str, arguments: Mapping[str, Any]) -> None:
        """``arguments``: the store constructor's arguments (its ``locals()``)."""
        if sum(arguments[source] is not None for source in ("dsn", "connection", "pool")) != 1:
            raise ValueError(f"{owner} needs exactly one of dsn, connection or pool")
        schema = arguments["schema"]
        use_pgvector = arguments["use_pgvector"]
        if not isinstance(schema, str) or len(schema) > 63 or not SCHEMA_NAME.match(schema):
            raise ValueError(
                f"schema must be alphanumeric or underscore, start with a letter or "
                f"underscore and be at most 63 characters: {schema!r}"
            )
        if use_pgvector not in (True, False, "auto"):
            raise ValueError(f"use_pgvector must be True, False or 'auto', got {use_pgvector!r}")
        self._hnsw = HnswOptions(
            m=arguments["hnsw_m"],
            ef_construction=arguments["hnsw_ef_construction"],
            ef_search=arguments["ef_search"],
            max_scan_tuples=arguments["max_scan_tuples"],
            exact_search_max_rows=arguments["exact_search_max_rows"],
            ivfflat_max_rows=arguments["ivfflat_max_rows"],
            ivfflat_probes=arguments["ivfflat_probes"],
        )
        self._replica_options = ReplicaOptions(
            max_lag=arguments["replica_max_lag"],
            wait_timeout=arguments["replica_wait_timeout"],
            retry_interval=arguments["replica_retry_interval"],
        )
        replicas = arguments["replicas"]
        if isinstance(replicas, str) or not isinstance(replicas, Sequence):
            raise ValueError("replicas must be a list of DSNs or connection pools")
        for replica in replicas:
            if not (isinstance(replica, str) or _pool_like(replica)):
                raise ValueError(
                    f"each replica must be a DSN string or a connection pool, got {replica!r}"
                )
        # Everything but the connection sources, to build a twin store with.
        self._options = {name: arguments[name] for name in STORE_OPTIONS}
        self.schema = schema
        self._use_pgvector = use_pgvector
        self._progress: ProgressFn | None = arguments["progress"]
        self._sql: dict[str, Composed] = {}
        self._open = False
        self._closed = False  # once closed, a store stays closed
        # id -> (last now, touches) of update_access calls not yet written.
        self._pending: dict[int, tuple[int, int]] = {}
        self._pending_since = 0.0
        self._pending_lock = threading.Lock()
        self._dropped_touches = 0
        # With replicas: counter deltas not written yet because the primary was down.
        self._counter_backlog: dict[str, dict[str, int]] = {}
        # pgvector: the side-table statements when this store keeps the side table
        # written (always, once the schema has it), the vector type to register on
        # connections, and whether this store answers search.
        self._vec: VectorStatements | None = None
        self._vector_info: TypeInfo | None = None
        self._search = False
        self._iterative = False
        self._dim = 0
        # Layer-2 sessions: connections this store owns get the hnsw settings once.
        self._owned = False
        self._tuned: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
        # Rows per namespace graph (for its ef_search), and when they were last read.
        self._graph_rows: dict[str, tuple[float, int]] = {}  # rows, ef_construction
        self._ivfflat_lists: dict[str, int] = {}  # namespaces with an IVFFlat index
        self._graph_rows_at = float("-inf")
        # Automatic graphs: rows written per namespace since its size was last checked,
        # and namespaces known to have (or be getting) a graph.
        self._auto_index = bool(arguments["auto_index"])
        self._written: dict[str, int] = {}
        self._graphed: set[str] = set()
        # When the last bulk batch (a COPY) was loaded, on the monotonic clock.
        self._loaded_at = float("-inf")
        # Fresh rows: how many this process left for the background pass, whether the
        # pass should run (again), and the pass itself while it runs.
        self._fresh_lock = threading.Lock()
        self._fresh_backlog = 0
        self._fresh_wanted = False
        self._fresh_pass: Any = None

    @property
    def vector_search_enabled(self) -> bool:
        """True when open with pgvector active: the cache then calls ``search``."""
        return self._open and self._search

    def _check(self) -> None:
        if not self._open:
            state = "closed" if self._closed else "not open"
            raise CacheClosedError(f"PostgresStore (schema {self.schema!r}) is {state}")

    def _adapt(self, conn: Any) -> None:
        """Register pgvector's adapters on a connection once (a type adapter, not
        session state; the type's oid was looked up at open, so no round trip)."""
        from pgvector.psycopg.vector import register_vector_info

        info = self._vector_info
        if info is not None and conn.adapters.types.get(info.oid) is None:
            register_vector_info(conn, info)

    @staticmethod
    def _error(op: str, exc: Exception) -> StoreBackendError:
        return StoreBackendError(f"PostgresStore.{op} failed: {str(exc).strip()}")

    # -- deferred access times ---------------------------------------------------

    def _take_pending(self) -> dict[int, tuple[int, int]]:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
            return pending

    def _restore_pending(self, pending: dict[int, tuple[int, int]]) -> None:
        with self._pending_lock:
            for id_, (t, n) in pending.items():
                newer = self._pending.get(id_)
                self._pending[id_] = (max(newer[0], t), newer[1] + n) if newer else (t, n)
            if pending and not self._pending_since:
                self._pending_since = time.monotonic()

    def _flush_due(self) -> bool:
        return bool(self._pending) and time.monotonic() - self._pending_since > _FLUSH_AFTER_S

    def _touch(self, id: int, now: int) -> bool:
        """Queue an access; True when enough are queued that they should be written."""
        with self._pending_lock:
            if not self._pending:
                self._pending_since = time.monotonic()
            touch = self._pending.get(id)
            if touch is None and len(self._pending) >= _PENDING_MAX:
                # Writes have been failing for long: keep memory bounded, lose LRU detail.
                self._dropped_touches += 1
                if self._dropped_touches == 1:
                    _log.warning(
                        "%d access times are waiting to be written; further ones are "
                        "dropped until the database takes them",
                        _PENDING_MAX,
                    )
                return True
            self._pending[id] = (now, 1 + (touch[1] if touch else 0))
            return len(self._pending) >= _FLUSH_AFTER_N

    # -- counter deltas held while the primary is down (stores with replicas) -------

    def _hold_counters(self, namespace: str, deltas: Mapping[str, int]) -> None:
        with self._pending_lock:
            held = self._counter_backlog.setdefault(namespace, {})
            for name, n in deltas.items():
                held[name] = held.get(name, 0) + n

    def _take_counters(self) -> dict[str, dict[str, int]]:
        with self._pending_lock:
            backlog, self._counter_backlog = self._counter_backlog, {}
            return backlog

    def _held_counters(self, namespace: str | None) -> dict[str, int]:
        with self._pending_lock:
            totals: dict[str, int] = {}
            for ns, held in self._counter_backlog.items():
                if namespace is None or ns == namespace:
                    for name, n in held.items():
                        totals[name] = totals.get(name, 0) + n
            return totals

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

    # -- operations: writing -------------------------------------------------------

    def _op_write(self, body: Callable[[], PgOp[tuple[_T, bool]]]) -> PgOp[_T]:
        """One transaction: lock the version slot, write pending touches, run ``body``,
        and bump the slot when ``body`` reports a change. Run with mode "raw"."""
        pending = self._take_pending()
        try:
            result: _T = yield from _retry_deadlocks(
                lambda: _atomic(self._op_write_body(pending, body))
            )
        except BaseException:
            self._restore_pending(pending)
            raise
        return result

    def _op_write_body(
        self, pending: dict[int, tuple[int, int]], body: Callable[[], PgOp[tuple[_T, bool]]]
    ) -> PgOp[_T]:
        yield Execute(self._sql["lock"])
        if pending:
            ids = sorted(pending)  # every writer locks entry rows in one order
            yield Execute(
                self._sql["flush"],
                [ids, [pending[i][0] for i in ids], [pending[i][1] for i in ids]],
            )
        result, changed = yield from body()
        if changed:
            yield Execute(self._sql["bump"])
        return result

    def _op_flush(self) -> PgOp[None]:
        if self._pending:
            yield from self._op_write(_nothing)

    def _op_upsert(self, body: Callable[[], PgOp[tuple[_T, bool]]]) -> PgOp[_T]:
        """An upsert statement that bumps the counter itself. Run with mode "raw"."""
        if self._pending:
            # Touches must be written after the counter lock, inside the same transaction.
            return (yield from self._op_write(body))
        conn = yield GetConnection()
        if conn.autocommit:  # the one statement is the whole transaction
            result, _ = yield from _retry_deadlocks(body)
            return result
        result, _ = yield from _retry_deadlocks(lambda: _atomic(body()))
        return result

    # -- operations: opening ------------------------------------------------------

    def _prepare_open(self) -> None:
        if self._closed:
            raise CacheClosedError(
                f"PostgresStore (schema {self.schema!r}) is closed; make a new store to open"
            )
        self._sql = {name: compose(text, self.schema) for name, text in STATEMENTS.items()}

    def _op_provision(self) -> PgOp[int]:
        version = yield from provision(self.schema, load_migrations())
        yield from keep_rows_inline(self.schema)
        return version

    def _op_read_embedder(self) -> PgOp[tuple[str | None, str | None]]:
        values = []
        for key in ("embedder_fingerprint", "embedder_dim"):
            row = yield Execute(self._sql["meta_get"], [key], "one")
            values.append(None if row is None else str(row[0]))
        return values[0], values[1]

    def _op_record_embedder(
        self, fingerprint: str, dim: int
    ) -> PgOp[tuple[str | None, str | None]]:
        # DO NOTHING: a concurrent opener may have recorded its embedder first.
        yield Execute(self._sql["meta_default"], ["embedder_fingerprint", fingerprint])
        yield Execute(self._sql["meta_default"], ["embedder_dim", str(dim)])
        return (yield from self._op_read_embedder())

    def _check_embedder(self, stored: tuple[str | None, str | None], fp: str, dim: int) -> None:
        stored_fp, stored_dim = stored
        check_embedder(
            stored_fp,
            int(stored_dim) if stored_dim is not None else None,
            fp,
            dim,
            f"PostgreSQL schema {self.schema!r}",
        )
        self._dim = int(dim)

    def _op_open_vectors(self, owned_connection: bool) -> PgOp[None]:
        """Decide, from the arguments and what the schema says, whether this store
        searches, keeps the side table written, or neither; upgrade when asked to.
        Run with mode "raw"."""
        self._vec, self._vector_info, self._search = None, None, False
        # Whether bulk loads may use a session staging table, with or without pgvector.
        self._owned = owned_connection
        state: VectorSchemaState = yield Atomic(read_state(self.schema))
        want = self._use_pgvector
        version = ""
        kind = ""
        if want is not False:
            try:
                kind = index_kind(self._dim)
                version = yield from ensure_extension(state)
            except StoreBackendError as exc:
                if want is True:
                    raise
                message = f"PostgresStore(use_pgvector='auto') falls back to plain storage: {exc}"
                _log.warning("%s", message)
                warnings.warn(message, RuntimeWarning, stacklevel=2)
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
        yield from self._op_vector_type()
        if state.flag_index is not None and not (state.has_registry and state.has_fresh):
            # A schema of an earlier version: add the graph registry and the fresh
            # column (no data moves, no rewrite).
            yield Atomic(execute(stmts.table, None))
        if want is not False:
            if not state.complete:
                yield from upgrade(
                    self.schema,
                    stmts,
                    self._hnsw,
                    owned_connection=owned_connection,
                    progress=self._progress,
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
        if self._search:
            yield from self._op_graph_sizes()
            if self._auto_index and owned_connection:
                # Rows a process left fresh when it stopped: this one moves them.
                row = yield Atomic(fetch_all(stmts.sql["any_fresh"], None))
                self._fresh_wanted = bool(row[0][0])

    def _op_vector_type(self) -> PgOp[None]:
        info = yield Atomic(_fetch_type("vector"))
        if info is None:
            raise StoreBackendError(f"schema {self.schema!r}: the vector type is missing")
        self._vector_info = info
        self._adapt((yield GetConnection()))

    def _op_adopt_vectors(self, written: Sequence[StoredEntry]) -> PgOp[VectorStatements]:
        """The schema got its vector side table after this store opened: keep it
        written from now on, starting with the entries this store just wrote.
        Run with mode "raw"."""
        state: VectorSchemaState = yield Atomic(read_state(self.schema))
        if state.flag_index is None or state.flag_dim != self._dim:
            raise StoreBackendError(
                f"schema {self.schema!r}: the pgvector side table is not usable "
                f"(dimension {state.flag_dim}, embedder {self._dim})"
            )
        stmts = VectorStatements(self.schema, self._dim, state.flag_index)
        yield from self._op_vector_type()
        for i in range(0, len(written), _INSERT_CHUNK):
            chunk = written[i : i + _INSERT_CHUNK]
            params = [
                [e.id for e in chunk],
                [e.namespace for e in chunk],
                [None if e.ttl is None else e.created_at + e.ttl for e in chunk],
                side_vectors([e.embedding for e in chunk], stmts.dim),
            ]
            yield Atomic(execute(stmts.sql["side_upsert"], params))
        return stmts

    # -- operations: reading -------------------------------------------------------

    def _op_fetch_entry(
        self, name: str, params: Sequence[Any], flush: bool = True
    ) -> PgOp[StoredEntry | None]:
        if flush and self._flush_due():
            yield from self._op_flush()
        row = yield Execute(self._sql[name], params, "one")
        return self._overlay(None if row is None else _entry(row))

    def _op_fetch(self, name: str, params: Sequence[Any] = (), fetch: str = "one") -> PgOp[Any]:
        result = yield Execute(self._sql[name], params, fetch)  # type: ignore[arg-type]
        return result

    def _op_scalar(self, name: str, params: Sequence[Any] = ()) -> PgOp[Any]:
        row = yield Execute(self._sql[name], params, "one")
        return None if row is None else row[0]

    def _op_page(self, name: str, after_id: int, batch: int) -> PgOp[list[Any]]:
        rows: list[Any] = yield Execute(self._sql[name], [after_id, batch], "all", binary=True)
        return rows

    def _op_lru(self, n: int, namespace: str | None) -> PgOp[list[int]]:
        """Run with mode "raw": touches are written first, in their own transaction."""
        yield from self._op_flush()
        if n <= 0:
            return []
        name, params = ("lru", [n]) if namespace is None else ("lru_ns", [namespace, n])
        rows = yield from _read(self._op_fetch(name, params, "all"))
        return [r[0] for r in rows]

    def _op_by_hashes(
        self, namespace: str, query_hashes: Sequence[str]
    ) -> PgOp[dict[str, StoredEntry]]:
        if not query_hashes:
            return {}
        params = [namespace, list(dict.fromkeys(query_hashes))]
        rows = yield Execute(self._sql["by_hashes"], params, "all")
        found = (self._overlay(_entry(row)) for row in rows)
        return {e.query_hash: e for e in found if e is not None}

    def _op_count(self, namespace: str | None) -> PgOp[int]:
        if namespace is None:
            return int((yield from self._op_scalar("count")))
        return int((yield from self._op_scalar("count_ns", [namespace])))

    def _op_namespaces(self) -> PgOp[list[str]]:
        rows = yield Execute(self._sql["namespaces"], fetch="all")
        return sorted(r[0] for r in rows)  # Python order, not the database collation

    def _op_optional_int(self, name: str, params: Sequence[Any] = ()) -> PgOp[int | None]:
        value = yield from self._op_scalar(name, params)
        return None if value is None else int(value)

    def _op_read_meta(self, key: str) -> PgOp[str | None]:
        value = yield from self._op_scalar("meta_get", [key])
        return None if value is None else str(value)

    def _op_counters(self, namespace: str | None) -> PgOp[dict[str, int]]:
        name, params = ("counters", []) if namespace is None else ("counters_ns", [namespace])
        rows = yield Execute(self._sql[name], params, "all")
        totals = dict.fromkeys(COUNTER_NAMES, 0)
        for counter, value in rows:
            totals[counter] = totals.get(counter, 0) + int(value)
        return totals

    def _op_set_quota(self, namespace: str, max_entries: int | None) -> PgOp[None]:
        if max_entries is None:
            yield Execute(self._sql["quota_del"], [namespace])
        else:
            yield Execute(self._sql["quota_set"], [namespace, max_entries])

    def _op_add_counters(self, deltas: Mapping[str, Mapping[str, int]]) -> PgOp[None]:
        """Every namespace's increments in one statement (one round trip, one commit)."""
        rows = sorted((ns, name, n) for ns, named in deltas.items() for name, n in named.items())
        if rows:
            spaces, names, values = (list(column) for column in zip(*rows, strict=True))
            yield Execute(self._sql["counters_add"], [spaces, names, values])

    def _op_delete_expired(self, now: int, namespace: str | None) -> PgOp[int]:
        if namespace is None:
            return (yield from self._op_delete("delete_expired", [now]))
        return (yield from self._op_delete("delete_expired_ns", [now, namespace]))

    def _op_integrity(self) -> PgOp[bool]:
        """Cheap structural check: the five tables, a valid unique Layer-1 index, a
        numeric version counter and a complete, consistent schema_meta."""
        row = yield Execute(self._sql["integrity"], [self.schema, self.schema], "one")
        if row is None:
            return False
        tables, index_ok, counter, slots, fingerprint, dim, version = row
        return bool(
            tables == 5
            and index_ok
            and slots == VERSION_SLOTS
            and counter is not None
            and counter.isdigit()
            and fingerprint
            and dim is not None
            and dim.isdigit()
            and version == str(self.schema_version)
        )

    # -- operations: entries ---------------------------------------------------------

    def _op_insert(self, entry: StoredEntry) -> PgOp[tuple[int, Any]]:
        """(id, the schema's pgvector flag when this store does not write vectors yet).
        Run with mode "raw"."""
        from psycopg.types.json import Jsonb

        metadata = None if entry.metadata is None else Jsonb(entry.metadata, dumps=metadata_json)
        params = _values(entry, metadata)
        vec = self._vec
        fresh = vec is not None and self._leaves_fresh(entry.namespace)

        def upsert() -> PgOp[tuple[tuple[int, Any], bool]]:
            if vec is None:
                row = yield Execute(self._sql["insert"], params, "one")
            else:
                side = side_vector(entry.embedding, vec.dim)
                row = yield Execute(vec.sql["insert"], [*params, side, fresh], "one")
            if row is None:
                raise StoreBackendError(
                    f"PostgresStore.insert: a row of version_slots is missing from schema "
                    f"{self.schema!r}; the schema was damaged outside mneme"
                )
            # The statement bumped the counter itself.
            return (int(row[0]), row[1] if vec is None else None), False

        result = yield from self._op_upsert(upsert)
        if fresh:
            with self._fresh_lock:
                self._fresh_backlog += 1
                self._fresh_wanted = True
        return result

    def _leaves_fresh(self, namespace: str) -> bool:
        """Whether a single write into ``namespace`` leaves its row out of the graph
        for the background pass: the namespace has (or is getting) a graph, this store
        runs the pass (opened from a DSN, with ``auto_index``), and its backlog is short."""
        return (
            self._auto_index
            and self._owned
            and self._search
            and self._graph_known(namespace)
            and self._fresh_backlog < FRESH_BACKLOG_MAX
        )

    def _graph_known(self, namespace: str) -> bool:
        """Whether this store knows ``namespace`` has (or is getting) a graph."""
        return namespace in self._graph_rows or namespace in self._graphed

    def _op_move_fresh(self) -> PgOp[int | None]:
        """One batch of the background pass (see ``move_fresh``)."""
        moved = yield from move_fresh(self._require_vectors(), self.schema, _FRESH_BATCH)
        if moved is not None:
            with self._fresh_lock:
                # Nothing left to move: whatever was counted (rewrites that kept their
                # place) is gone too.
                self._fresh_backlog = max(0, self._fresh_backlog - moved) if moved else 0
        return moved

    def _op_insert_many(
        self, rows: Sequence[StoredEntry]
    ) -> PgOp[tuple[dict[tuple[str, str], int], Any]]:
        """Ids by key, and the pgvector flag as for ``_op_insert``. Mode "raw".

        On a connection the store owns, a large batch is loaded with binary COPY
        (``_op_insert_bulk``); otherwise each chunk is one multi-row statement over
        unnest arrays."""
        if self._owned and len(rows) >= _COPY_AT_LEAST:
            size = load_rows(self._dim, self._vec is not None)
            slices = [rows[i : i + size] for i in range(0, len(rows), size)]
            return (yield from self._op_insert_bulk(slices))
        chunks = [rows[i : i + _INSERT_CHUNK] for i in range(0, len(rows), _INSERT_CHUNK)]
        vec = self._vec

        def upsert() -> PgOp[tuple[tuple[dict[tuple[str, str], int], Any], bool]]:
            results: list[Any] = []
            for chunk in chunks:  # parameters per chunk: bounded memory
                if vec is None:
                    columns = _batch_columns(chunk)
                    results.append((yield Execute(self._sql["insert_many"], columns, "all")))
                else:
                    sides = side_vectors([e.embedding for e in chunk], vec.dim)
                    columns = [*_batch_columns(chunk), sides]
                    results.append((yield Execute(vec.sql["insert_many"], columns, "all")))
            return _ids_and_flag(itertools.chain.from_iterable(results), vec is None), False

        if len(chunks) == 1:
            return (yield from self._op_upsert(upsert))
        # Several statements (each bumps the counter): one explicit transaction.
        return (yield from self._op_write(upsert))

    def _feed(self, chunks: Iterable[Sequence[StoredEntry]]) -> ChunkFeed:
        """``chunks`` as the bulk path takes them (see ``_op_insert_bulk``)."""
        return ChunkFeed(chunks, load_rows(self._dim, self._vec is not None))

    def _op_insert_bulk(
        self, chunks: Iterable[Sequence[StoredEntry]]
    ) -> PgOp[tuple[dict[tuple[str, str], int], Any]]:
        """``_op_insert_many`` by COPY, one transaction for all the chunks (each free
        of duplicate keys): straight into the tables on a pgvector store
        (``_op_direct``), through the staging table otherwise (``_op_staged``).
        ``chunks`` is read again from its start when a deadlock makes the transaction
        start over. Mode "raw"."""
        vec = self._vec

        def load() -> PgOp[tuple[tuple[dict[tuple[str, str], int], Any], bool]]:
            if vec is None:
                rows = yield from self._op_staged(chunks, None)
            else:
                rows = yield from self._op_direct(chunks, vec)
            self._loaded_at = time.monotonic()
            # The staged upserts bump the version themselves; COPY cannot.
            return _ids_and_flag(rows, vec is None), vec is not None

        return (yield from self._op_write(load))

    def _op_direct(
        self, chunks: Iterable[Sequence[StoredEntry]], vec: VectorStatements
    ) -> PgOp[list[Any]]:
        """COPY each chunk straight into entries and the side table, with its ids
        taken from the entries' sequence first (as many as it has rows: ids taken in
        blocks would leave gaps after every load). A COPY extends a table many pages at
        a time and inserts its rows in batches; an INSERT ... SELECT from the staging
        table extends it a page per row once rows are large (about a third of the
        server's time at dim 1536). COPY cannot upsert: each chunk is written under a
        savepoint, and the first chunk that meets a stored key (or holds a row COPY
        cannot carry) and every chunk after it go through the staging table's upsert.
        While the server stores one chunk, the client makes the next (see ``direct``)."""
        from psycopg import sql
        from psycopg.errors import UniqueViolation

        conn = yield GetConnection()
        table = sql.Identifier(self.schema, "entries").as_string(conn)
        pending = iter(chunks)
        written: list[Any] = []
        chunk = next(pending, None)
        ready: DirectChunk | None = None  # ``chunk`` with its entry data made
        while chunk is not None:
            if not _copyable(chunk):
                return written + (yield from self._op_staged_from(chunk, pending, vec))
            if ready is None:
                ready = DirectChunk(chunk, vec.dim, _json_or_none)
                got = yield Execute(vec.sql["load_ids"], [table, len(chunk)], "all")
                ready.encode_entries(_load_ids(got))
            taken: list[Sequence[StoredEntry]] = []
            try:
                following = yield Atomic(_op_copy_chunk(vec, table, ready, pending, taken))
            except UniqueViolation:
                rest = itertools.chain(taken, pending)
                return written + (yield from self._op_staged_from(chunk, rest, vec))
            written.extend(
                (e.namespace, e.query_hash, i) for e, i in zip(chunk, ready.ids, strict=True)
            )
            chunk, ready = (taken[0] if taken else None), following
        return written

    def _op_staged_from(
        self,
        chunk: Sequence[StoredEntry],
        rest: Iterable[Sequence[StoredEntry]],
        vec: VectorStatements,
    ) -> PgOp[list[Any]]:
        """``chunk`` and the chunks after it through the staging table, in chunks of
        the size it holds."""
        size = stage_rows(vec.dim, True)
        parts = (
            c[i : i + size] for c in itertools.chain([chunk], rest) for i in range(0, len(c), size)
        )
        return (yield from self._op_staged(parts, vec))

    def _op_staged(
        self, chunks: Iterable[Sequence[StoredEntry]], vec: VectorStatements | None
    ) -> PgOp[list[Any]]:
        """COPY each chunk into the session's staging table and upsert it from there,
        inside a transaction (at whose end the staging table empties). The client
        takes and encodes the next chunk while the server upserts this one (the upsert
        is sent in pipeline mode, which does not wait for its result): the client's
        work and the server's overlap instead of taking turns."""
        names = vec.sql if vec is not None else self._sql
        exists = yield Execute(names["stage_exists"], fetch="one", prepare=False)
        if not exists[0]:  # the session's first load (or its first was rolled back)
            yield Execute(names["stage"], prepare=False)
            yield Execute(names["stage_storage"], prepare=False)
        # The upsert sorts and re-reads each chunk: in memory rather than in temp files,
        # and joined by hashing (the staging table has no statistics: the planner,
        # expecting far more rows, chose sorts for a merge join).
        yield Execute(
            "SELECT set_config('work_mem', '64MB', true), "
            "set_config('enable_mergejoin', 'off', true)",
            prepare=False,
        )
        dim = 0 if vec is None else vec.dim
        upsert = Execute(names["insert_staged"], None, "all", prepare=False)
        empty = Execute(names["stage_empty"], prepare=False)
        pending = iter(chunks)
        start = 0

        def encode_next() -> bytes | None:
            nonlocal start
            chunk = next(pending, None)
            if chunk is None:
                return None
            data = _encode_staged(chunk, dim, start)
            start += len(chunk)
            return data

        upserted: list[Any] = []
        data = encode_next()
        while data is not None:
            yield CopyIn(names["stage_copy"], data)
            got, data = yield Pipelined([upsert, empty], 0, meanwhile=encode_next)
            upserted.extend(got)
        return upserted

    def _op_delete(self, name: str, params: Sequence[Any]) -> PgOp[int]:
        def delete() -> PgOp[tuple[int, bool]]:
            count: int = yield Execute(self._sql[name], params, "rowcount")
            return count, count > 0

        return (yield from self._op_write(delete))

    def _op_delete_many(self, ids: Sequence[int]) -> PgOp[dict[str, int]]:
        params = [list(dict.fromkeys(ids))]

        def delete() -> PgOp[tuple[dict[str, int], bool]]:
            rows = yield Execute(self._sql["delete_ids"], params, "all")
            counts = {ns: int(n) for ns, n in rows}
            return counts, bool(counts)

        return (yield from self._op_write(delete))

    # -- operations: pgvector ----------------------------------------------------------

    def _search_params(
        self,
        namespace: str,
        vector: npt.NDArray[np.float32],
        k: int,
        now: int,
        floor: float | None,
    ) -> tuple[VectorStatements, dict[str, Any]] | None:
        """Checks and parameters of a search; None when there is nothing to search for."""
        vec = self._vec
        if not self._search or vec is None:
            raise StoreBackendError(
                "PostgresStore.search needs use_pgvector=True (or 'auto' with pgvector "
                "available on the server)"
            )
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if k <= 0 or query.shape != (vec.dim,):
            return None
        # A finite, non-zero vector has a finite, positive squared norm; only the rest
        # (or a norm that overflows or underflows) takes the slower exact checks.
        squared = float(query @ query)
        if not 0.0 < squared < math.inf and (not np.isfinite(query).all() or not np.any(query)):
            return None  # cosine is undefined for a zero vector, and for NaN or infinity
        params = {
            "ns": namespace,
            "q": query,
            "now": now,
            "k": k,
            # The walk's candidates come best first as long as the scan takes no more
            # than ef_search of them (see _search_settings); a relaxed-order iterative
            # scan goes on, roughly ordered, only when filters drop rows of that first
            # pass. Taking more than k only cost heap reads: 0.03-0.09 ms for 20.
            "scan": k,
            "gate": True,
            # Neighbours below it come without their entries.
            "floor": -math.inf if floor is None else float(floor),
        }
        return vec, params

    def _search_settings(self, namespace: str, k: int) -> list[str]:
        """ef_search of a search for ``k`` rows in the namespace's graph, ivfflat.probes
        [, max_scan_tuples], as set_config takes them."""
        rows, built = self._graph_rows.get(namespace, (0.0, WELL_BUILT))
        settings = [str(self._hnsw.ef_for(rows, built, at_least=k)), str(self._hnsw.ivfflat_probes)]
        if self._iterative:
            settings.append(str(self._hnsw.max_scan_tuples))
        return settings

    def _op_search(
        self,
        namespace: str,
        vector: npt.NDArray[np.float32],
        k: int,
        now: int,
        floor: float | None = None,
    ) -> PgOp[Candidates]:
        """Run with mode "raw": one round trip on an autocommit connection."""
        prepared = self._search_params(namespace, vector, k, now, floor)
        if prepared is None:
            return Candidates()
        yield from self._op_graph_sizes()
        vec, params = prepared
        settings = self._search_settings(namespace, k)
        tuned = self._tuned if self._owned else None
        graphless = not self._graph_known(namespace)
        rows = yield from run_search(vec, settings, self._iterative, params, tuned, exact=graphless)
        return self._candidates(rows, params["floor"])

    def _candidates(self, rows: Iterable[Sequence[Any]], floor: float) -> Candidates:
        """Search rows (entry columns, then the similarity) as candidates. A row without
        its entry is a neighbour below ``floor``: it and those after it are left out."""
        found = Candidates()
        for row in rows:
            similarity = float(row[11])
            if row[0] is None:
                if similarity < floor:
                    found.below = True
                    break
                continue  # its entry went with it after the walk read it
            entry = self._overlay(_entry(row))
            if entry is not None:
                found.append((entry, min(1.0, max(-1.0, similarity))))
        return found

    def _op_graph_sizes(self) -> PgOp[None]:
        """Read the graphs' sizes once a minute (they set ef_search per namespace)."""
        if time.monotonic() - self._graph_rows_at < _GRAPH_SIZES_EVERY_S or self._vec is None:
            return
        self._graph_rows_at = time.monotonic()
        rows = yield Atomic(fetch_all(self._vec.sql["graph_sizes"], [self.schema]))
        # An IVFFlat index has no ef_construction; its ef_search is never read.
        self._graph_rows = {
            str(ns): (float(n), WELL_BUILT if lists else int(built)) for ns, n, built, lists in rows
        }
        self._ivfflat_lists = {str(ns): int(lists) for ns, _, _, lists in rows if lists}

    def _require_vectors(self) -> VectorStatements:
        if self._vec is None:
            raise StoreBackendError(
                f"schema {self.schema!r} has no pgvector side table; open with use_pgvector=True"
            )
        return self._vec

    def _op_lookup(
        self,
        namespace: str,
        query_hash: str,
        vector: npt.NDArray[np.float32],
        k: int,
        now: int,
        floor: float | None = None,
        *,
        flush: bool = True,
    ) -> PgOp[tuple[StoredEntry | None, Candidates]]:
        """The exact entry and the search's candidates in one statement. Mode "raw".
        ``flush``: write due access times first (not when the read may go to a replica;
        the store writes them to the primary apart)."""
        if flush and self._flush_due():
            yield from self._op_flush()
        prepared = self._search_params(namespace, vector, k, now, floor)
        if prepared is None:
            entry = yield from self._op_fetch_entry("by_hash", [namespace, query_hash], flush=False)
            return entry, Candidates()
        yield from self._op_graph_sizes()
        vec, params = prepared
        settings = self._search_settings(namespace, k)
        params["h"] = query_hash
        tuned = self._tuned if self._owned else None
        graphless = not self._graph_known(namespace)
        rows = yield from run_search(
            vec, settings, self._iterative, params, tuned, "lookup", exact=graphless
        )
        # Rows are told apart by their tag, not by where they come.
        exact = next((self._overlay(_entry(row[1:])) for row in rows if row[0] == 0), None)
        return exact, self._candidates((row[1:] for row in rows if row[0] == 1), params["floor"])

    def _op_rebuild_index(self, namespace: str | None) -> PgOp[list[str]]:
        """REINDEX the graph of ``namespace``, or every graph (and a legacy
        all-namespace index); returns the index names rebuilt. Run with mode "raw"."""

        vec = self._require_vectors()
        graphs = yield from graph_states(self.schema, self._hnsw.exact_search_max_rows)
        names = [
            g.index_name
            for g in graphs
            if g.state == "ready" and g.index_name and namespace in (None, g.namespace)
        ]
        if namespace is None and (yield Atomic(index_state(self.schema))) is not None:
            names.append(LEGACY_INDEX_NAME)
        conn = yield GetConnection()
        yield from builder_lock(self.schema, wait=True)
        reindex = self._reindex(vec, names, bool(conn.autocommit))
        yield from with_cleanup(reindex, release_builder_lock(self.schema))
        return names

    def _reindex(self, vec: VectorStatements, names: Sequence[str], autocommit: bool) -> PgOp[None]:
        from psycopg import sql

        for name in names:
            started = time.monotonic()
            index = vec.index_ident(name)
            if autocommit:
                yield Execute(sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(index))
            else:
                _log.warning(
                    "schema %r: rebuilding %s inside a transaction; writers wait until it is done",
                    self.schema,
                    name,
                )
                yield Atomic(execute(sql.SQL("REINDEX INDEX {}").format(index), None))
            _log.info(
                "schema %r: %s rebuilt in %.1f s", self.schema, name, time.monotonic() - started
            )

    def _op_graph_states(self) -> PgOp[list[VectorGraph]]:
        self._require_vectors()
        return (yield from graph_states(self.schema, self._hnsw.exact_search_max_rows))

    def _op_build_graphs(self, progress: ProgressFn | None) -> PgOp[list[str]]:
        """Run with mode "raw" on an autocommit connection."""
        vec = self._require_vectors()
        conn = yield GetConnection()
        if not conn.autocommit:
            raise StoreBackendError(
                "build_vector_indexes needs an autocommit connection (CREATE INDEX "
                "CONCURRENTLY cannot run in a transaction): use a store opened with dsn=, "
                "or pass an autocommit connection"
            )
        built = yield from build_missing(
            self.schema, vec, self._hnsw, owned_connection=self._owned, progress=progress
        )
        self._graphed.update(built)
        self._graph_rows_at = float("-inf")  # read the new graphs' sizes on the next search
        return built

    def _op_build_graph(self, namespace: str, owned_connection: bool) -> PgOp[bool]:
        """One namespace's graph, on a connection of its own (a background build)."""
        vec = self._require_vectors()
        built = yield from build_graph(
            self.schema, vec, self._hnsw, namespace, owned_connection=owned_connection, wait=False
        )
        if built:
            yield from retire_legacy_index(self.schema, self._hnsw.exact_search_max_rows)
            self._graph_rows_at = float("-inf")
            yield from self._op_graph_sizes()  # an IVFFlat index's new lists, now
        return built

    def _load_pause(self) -> float:
        """Seconds a background build still waits for bulk loads to pause (0: go)."""
        return max(0.0, self._loaded_at + LOAD_QUIET_S - time.monotonic())

    def _grown(self, counts: Mapping[str, int]) -> list[str]:
        """Note rows written per namespace; the namespaces whose size is due a check
        (the first write after open, then every ``_CHECK_EVERY`` rows). A namespace with
        an HNSW graph is not checked again; one with an IVFFlat index is, since it
        outgrows its lists."""
        if not (self._auto_index and self._owned and self._search):
            return []
        due = []
        for namespace, n in counts.items():
            if self._graph_known(namespace) and namespace not in self._ivfflat_lists:
                continue
            seen = self._written.get(namespace)
            total = n if seen is None else seen + n
            if seen is None or total >= _CHECK_EVERY:
                due.append(namespace)
                total = 0
            self._written[namespace] = total
        return due

    def _op_needs_graph(self, namespace: str) -> PgOp[bool]:
        """Whether ``namespace`` is over the threshold without a valid graph, or has
        outgrown its IVFFlat index."""
        threshold = self._hnsw.exact_search_max_rows
        lists = self._ivfflat_lists.get(namespace)
        bound = threshold if lists is None else self._hnsw.ivfflat_bound(lists)
        rows, graphed = yield from namespace_graph_check(self.schema, namespace, bound)
        if graphed:
            self._graphed.add(namespace)
        return rows > bound or (rows > threshold and not graphed)

    # -- checkpoints --------------------------------------------------------------

    def snapshot_to(self, dest_path: str) -> None:
        if self._closed:
            raise CacheClosedError(f"PostgresStore (schema {self.schema!r}) is closed")
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


def _nothing() -> PgOp[tuple[None, bool]]:
    return None, False
    yield  # a generator that yields nothing


def _pool_like(value: Any) -> bool:
    return hasattr(value, "connection") or hasattr(value, "getconn")


def op_row(query: str) -> PgOp[Any]:
    """One statement; its first row (None when it has none)."""
    row = yield Execute(query, fetch="one")
    return row


def _atomic(body: PgOp[_T]) -> PgOp[_T]:
    result: _T = yield Atomic(body)
    return result


def _retry_deadlocks(make: Callable[[], PgOp[_T]]) -> PgOp[_T]:
    """Run ``make()``; when the server aborts it to break a deadlock with another
    writer (both changing the same entry rows in different orders), run it again."""
    from psycopg.errors import DeadlockDetected

    for attempt in range(1, _DEADLOCK_ATTEMPTS + 1):
        try:
            return (yield from make())
        except DeadlockDetected:
            if attempt == _DEADLOCK_ATTEMPTS:
                raise
            _log.info("write transaction chosen to break a deadlock; running it again")
            yield Sleep(random.uniform(0.0, _DEADLOCK_PAUSE_S * 2**attempt))
    raise AssertionError("unreachable")


def _read(body: PgOp[_T]) -> PgOp[_T]:
    """A read inside a "raw" operation: in a transaction only when the connection is
    not autocommit, so a caller's connection is never left inside one."""
    conn = yield GetConnection()
    if conn.autocommit:
        return (yield from body)
    result: _T = yield Atomic(body)
    return result


def _one_value(template: str, schema: str, params: Sequence[Any]) -> PgOp[Any]:
    from psycopg import sql

    return (yield from fetch_value(sql.SQL(template).format(sql.Identifier(schema)), params))


def _fetch_type(name: str) -> PgOp[Any]:
    info = yield FetchTypeInfo(name)
    return info
