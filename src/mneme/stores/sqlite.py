"""SQLiteStore: the embedded default store, one SQLite file (or ``":memory:"``)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from mneme._errors import (
    CacheClosedError,
    CheckpointError,
    CorruptCacheError,
    MnemeError,
    StoreBackendError,
)
from mneme._types import StoredEntry
from mneme.stores.common import check_embedder
from mneme.stores.protocol import COUNTER_NAMES
from mneme.stores.sqlite_schema import SCHEMA_VERSION, migrate

__all__ = ["SQLiteStore"]

_COLUMNS = (
    "id, namespace, query_hash, query, response, embedding, metadata, "
    "created_at, last_accessed_at, ttl, access_count"
)
_BATCH = 1000
_MAX_PARAMS = 500
_T = TypeVar("_T")
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "not a database" in text or "malformed" in text


def _row_to_entry(row: tuple[Any, ...]) -> StoredEntry:
    metadata = None if row[6] is None else json.loads(row[6])
    return StoredEntry(
        id=row[0],
        namespace=row[1],
        query_hash=row[2],
        query=row[3],
        response=row[4],
        embedding=bytes(row[5]),
        metadata=metadata,
        created_at=row[7],
        last_accessed_at=row[8],
        ttl=row[9],
        access_count=row[10],
    )


_UPSERT = (
    "INSERT INTO entries (namespace, query_hash, query, response, embedding, metadata, "
    "created_at, last_accessed_at, ttl, access_count, changed_version) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(namespace, query_hash) DO UPDATE SET query = excluded.query, "
    "response = excluded.response, embedding = excluded.embedding, "
    "metadata = excluded.metadata, created_at = excluded.created_at, "
    "last_accessed_at = excluded.last_accessed_at, ttl = excluded.ttl, "
    "access_count = excluded.access_count, changed_version = excluded.changed_version "
    "RETURNING id"
)


def _entry_params(entry: StoredEntry) -> tuple[Any, ...]:
    metadata = None if entry.metadata is None else json.dumps(entry.metadata)
    return (
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
    )


def _chunks(items: list[_T]) -> Iterator[list[_T]]:
    """Slices small enough for SQLite's limit on bound parameters."""
    for start in range(0, len(items), _MAX_PARAMS):
        yield items[start : start + _MAX_PARAMS]


def _create_private(path: str) -> None:
    """Create ``path`` with mode 0600 unless it exists; an existing file keeps its mode."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _sqlite_connect(path: str, timeout: float, *, uri: bool = False) -> sqlite3.Connection:
    # Autocommit mode: every transaction is an explicit BEGIN IMMEDIATE ... COMMIT.
    return sqlite3.connect(
        path, timeout=timeout, isolation_level=None, check_same_thread=False, uri=uri
    )


class SQLiteStore:
    """Entries in one SQLite database, safe for several threads and processes.

    A file store is created with mode 0600 and runs in WAL mode, so readers never
    block the writer; every mutation is one ``BEGIN IMMEDIATE`` transaction that also
    bumps the version counter, and concurrent writers wait up to ``timeout`` seconds.
    """

    backend_label = "sqlite"
    schema_version = SCHEMA_VERSION

    def __init__(self, path: str, *, timeout: float = 5.0, cache_size_kb: int = 10_000) -> None:
        if timeout < 0:
            raise ValueError("timeout must be >= 0")
        if cache_size_kb < 1:
            raise ValueError("cache_size_kb must be >= 1")
        self._path = os.fspath(path)
        self._timeout = timeout
        self._cache_size_kb = cache_size_kb
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False  # once closed, a store stays closed

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r})"

    # -- plumbing -----------------------------------------------------------------------

    def _error(self, operation: str, exc: BaseException) -> MnemeError:
        if isinstance(exc, sqlite3.Error) and _is_corruption(exc):
            return CorruptCacheError(
                f"SQLite {operation} on {self._path}: the file is corrupt or not a "
                f"SQLite database ({exc}); restore it from a snapshot or delete it"
            )
        return StoreBackendError(f"SQLite {operation} on {self._path} failed: {exc}")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CacheClosedError(f"{self!r} is {'closed' if self._closed else 'not open'}")
        return self._conn

    @contextlib.contextmanager
    def _read(self, operation: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise self._error(operation, exc) from exc

    @contextlib.contextmanager
    def _write(self, operation: str) -> Iterator[sqlite3.Connection]:
        with self._read(operation) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.rollback()
                raise

    @staticmethod
    def _bump_version(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE multi_process_state SET value = value + 1 WHERE key = 'version_counter'"
        )

    # -- lifecycle ----------------------------------------------------------------------

    def open(self, embedder_fingerprint: str, embedder_dim: int) -> None:
        with self._lock:
            if self._closed:
                raise CacheClosedError(f"{self!r} is closed; make a new store to open")
            fresh = self._conn is None
            if fresh:
                self._conn = self._connect()
            try:
                with self._write("open") as conn:
                    self._migrate(conn)
                    meta = dict(conn.execute("SELECT key, value FROM schema_meta").fetchall())
                    stored_dim = meta.get("embedder_dim")
                    check_embedder(
                        meta.get("embedder_fingerprint"),
                        None if stored_dim is None else int(stored_dim),
                        embedder_fingerprint,
                        embedder_dim,
                        f"SQLite cache {self._path}",
                    )
                    conn.executemany(
                        "INSERT OR IGNORE INTO schema_meta (key, value) VALUES (?, ?)",
                        [
                            ("embedder_fingerprint", embedder_fingerprint),
                            ("embedder_dim", str(embedder_dim)),
                        ],
                    )
            except BaseException:
                if fresh:
                    self._release()
                raise

    def _connect(self) -> sqlite3.Connection:
        try:
            if self._path != ":memory:":
                _create_private(self._path)
            conn = _sqlite_connect(self._path, self._timeout)
        except (OSError, sqlite3.Error) as exc:
            raise self._error("connect", exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            if self._path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA cache_size = {-int(self._cache_size_kb)}")
        except sqlite3.Error as exc:
            conn.close()
            raise self._error("open", exc) from exc
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        migrate(conn, self._path, self.schema_version)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._release()

    def _release(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    # -- reads --------------------------------------------------------------------------

    def get_by_hash(self, namespace: str, query_hash: str) -> StoredEntry | None:
        with self._read("get_by_hash") as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM entries WHERE namespace = ? AND query_hash = ?",  # noqa: S608
                (namespace, query_hash),
            ).fetchone()
        return None if row is None else _row_to_entry(row)

    def get_by_id(self, id: int) -> StoredEntry | None:
        with self._read("get_by_id") as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM entries WHERE id = ?",  # noqa: S608
                (id,),
            ).fetchone()
        return None if row is None else _row_to_entry(row)

    def count(self, namespace: str | None = None) -> int:
        with self._read("count") as conn:
            if namespace is None:
                row = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
            else:
                row = conn.execute(
                    "SELECT COUNT(*) FROM entries WHERE namespace = ?", (namespace,)
                ).fetchone()
        return int(row[0])

    def list_namespaces(self) -> list[str]:
        with self._read("list_namespaces") as conn:
            rows = conn.execute("SELECT DISTINCT namespace FROM entries ORDER BY namespace")
            return [r[0] for r in rows]

    def iter_lru_ids(self, n: int, namespace: str | None = None) -> list[int]:
        with self._read("iter_lru_ids") as conn:
            if n <= 0:
                return []
            if namespace is None:
                rows = conn.execute(
                    "SELECT id FROM entries ORDER BY last_accessed_at, id LIMIT ?", (n,)
                )
            else:
                rows = conn.execute(
                    "SELECT id FROM entries WHERE namespace = ? "
                    "ORDER BY last_accessed_at, id LIMIT ?",
                    (namespace, n),
                )
            return [r[0] for r in rows]

    def _pages(self, operation: str, columns: str, after_id: int) -> Iterator[tuple[Any, ...]]:
        # Keyset pagination: one short query per batch, so the table is never held in
        # memory and writers are not blocked for the length of the iteration.
        sql = f"SELECT {columns} FROM entries WHERE id > ? ORDER BY id LIMIT {_BATCH}"  # noqa: S608
        while True:
            with self._read(operation) as conn:
                rows = conn.execute(sql, (after_id,)).fetchall()
            yield from rows
            if len(rows) < _BATCH:
                return
            after_id = rows[-1][0]

    def iter_all(self) -> Iterator[StoredEntry]:
        return self.iter_since(0)

    def iter_since(self, last_id: int) -> Iterator[StoredEntry]:
        self._connection()  # fail now, not at the first next()
        return map(_row_to_entry, self._pages("iter_since", _COLUMNS, last_id))

    def iter_vectors(self, after_id: int = 0) -> Iterator[tuple[int, str, bytes]]:
        self._connection()
        return (
            (r[0], r[1], bytes(r[2]))
            for r in self._pages("iter_vectors", "id, namespace, embedding", after_id)
        )

    def iter_changed_vectors(self, since_version: int) -> Iterator[tuple[int, str, bytes]]:
        """(id, namespace, embedding) of rows inserted or replaced after
        ``since_version``, id ascending."""
        with self._read("iter_changed_vectors") as conn:
            rows = conn.execute(
                "SELECT id, namespace, embedding FROM entries WHERE changed_version > ? "
                "ORDER BY id",
                (since_version,),
            ).fetchall()
        return ((r[0], r[1], bytes(r[2])) for r in rows)

    # -- writes -------------------------------------------------------------------------

    def insert(self, entry: StoredEntry) -> int:
        return self.insert_many([entry])[0]

    def insert_many(self, entries: Sequence[StoredEntry]) -> list[int]:
        with self._write("insert") as conn:
            # Sequential upserts: a later duplicate in the batch replaces the earlier
            # row in place, so both get the same id.
            if not entries:
                return []
            self._bump_version(conn)
            (version,) = conn.execute(
                "SELECT value FROM multi_process_state WHERE key = 'version_counter'"
            ).fetchone()
            return [
                int(conn.execute(_UPSERT, (*_entry_params(e), version)).fetchone()[0])
                for e in entries
            ]

    def get_many_by_hash(
        self, namespace: str, query_hashes: Sequence[str]
    ) -> dict[str, StoredEntry]:
        found: dict[str, StoredEntry] = {}
        with self._read("get_many_by_hash") as conn:
            for chunk in _chunks(list(dict.fromkeys(query_hashes))):
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM entries WHERE namespace = ? "  # noqa: S608
                    f"AND query_hash IN ({', '.join('?' * len(chunk))})",
                    (namespace, *chunk),
                )
                found.update((e.query_hash, e) for e in map(_row_to_entry, rows))
        return found

    def delete_many(self, ids: Sequence[int]) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._write("delete_many") as conn:
            for chunk in _chunks(list(dict.fromkeys(ids))):
                rows = conn.execute(
                    f"DELETE FROM entries WHERE id IN ({', '.join('?' * len(chunk))}) "  # noqa: S608
                    "RETURNING namespace",
                    chunk,
                ).fetchall()
                for (namespace,) in rows:
                    counts[namespace] = counts.get(namespace, 0) + 1
            if counts:
                self._bump_version(conn)
        return counts

    def oldest_created_at(self) -> int | None:
        with self._read("oldest_created_at") as conn:
            row = conn.execute("SELECT MIN(created_at) FROM entries").fetchone()
        return None if row[0] is None else int(row[0])

    def update_access(self, id: int, now: int) -> None:
        with self._write("update_access") as conn:
            conn.execute(
                "UPDATE entries SET last_accessed_at = ?, access_count = access_count + 1 "
                "WHERE id = ?",
                (now, id),
            )

    def _delete(self, operation: str, where: str, params: tuple[Any, ...]) -> int:
        with self._write(operation) as conn:
            deleted = conn.execute(f"DELETE FROM entries WHERE {where}", params).rowcount  # noqa: S608
            if deleted:
                self._bump_version(conn)
        return deleted

    def delete_by_id(self, id: int) -> bool:
        return self._delete("delete_by_id", "id = ?", (id,)) > 0

    def delete_expired(self, now: int, namespace: str | None = None) -> int:
        where = "ttl IS NOT NULL AND ? - created_at >= ttl"
        if namespace is None:
            return self._delete("delete_expired", where, (now,))
        return self._delete("delete_expired", where + " AND namespace = ?", (now, namespace))

    def clear_namespace(self, namespace: str) -> int:
        return self._delete("clear_namespace", "namespace = ?", (namespace,))

    def set_namespace_quota(self, namespace: str, max_entries: int | None) -> None:
        with self._write("set_namespace_quota") as conn:
            if max_entries is None:
                conn.execute("DELETE FROM namespace_quotas WHERE namespace = ?", (namespace,))
            else:
                conn.execute(
                    "INSERT INTO namespace_quotas (namespace, max_entries) VALUES (?, ?) "
                    "ON CONFLICT(namespace) DO UPDATE SET max_entries = excluded.max_entries",
                    (namespace, max_entries),
                )

    def get_namespace_quota(self, namespace: str) -> int | None:
        with self._read("get_namespace_quota") as conn:
            row = conn.execute(
                "SELECT max_entries FROM namespace_quotas WHERE namespace = ?", (namespace,)
            ).fetchone()
        return None if row is None else int(row[0])

    def read_version_counter(self) -> int:
        with self._read("read_version_counter") as conn:
            row = conn.execute(
                "SELECT value FROM multi_process_state WHERE key = 'version_counter'"
            ).fetchone()
        return int(row[0])

    def read_meta(self, key: str) -> str | None:
        with self._read("read_meta") as conn:
            row = conn.execute("SELECT value FROM schema_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def write_meta(self, key: str, value: str) -> None:
        with self._write("write_meta") as conn:
            conn.execute(
                "INSERT INTO schema_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def add_counters(self, namespace: str, deltas: Mapping[str, int]) -> None:
        self.add_counters_many({namespace: deltas})

    def add_counters_many(self, deltas: Mapping[str, Mapping[str, int]]) -> None:
        """Every namespace's increments in one transaction."""
        with self._write("add_counters") as conn:
            conn.executemany(
                "INSERT INTO cache_counters (namespace, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT(namespace, name) DO UPDATE SET value = value + excluded.value",
                [(ns, name, n) for ns, named in deltas.items() for name, n in named.items()],
            )

    def read_counters(self, namespace: str | None = None) -> dict[str, int]:
        with self._read("read_counters") as conn:
            if namespace is None:
                rows = conn.execute(
                    "SELECT name, SUM(value) FROM cache_counters GROUP BY name"
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT name, value FROM cache_counters WHERE namespace = ?", (namespace,)
                ).fetchall()
        totals = dict.fromkeys(COUNTER_NAMES, 0)
        totals.update((name, int(value)) for name, value in rows)
        return totals

    # -- integrity and checkpoints ------------------------------------------------------

    def integrity_check(self) -> bool:
        with self._read("integrity_check") as conn:
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise CorruptCacheError(
                f"SQLite integrity check of {self._path} failed: {'; '.join(problems[:5])}; "
                "restore the cache from a snapshot or delete it"
            )
        return True

    def snapshot_to(self, dest_path: str) -> None:
        with self._read("snapshot_to") as conn:
            _backup(conn, os.fspath(dest_path), self._timeout)

    @classmethod
    def restore_from(cls, source_path: str, dest_path: str) -> SQLiteStore:
        """Copy a ``snapshot_to`` file (or any cache file) to ``dest_path`` with
        SQLite's backup API, after checking it; returns an unopened store on the copy,
        as mneme 1.0 did. A missing or unusable source raises ``CheckpointError``."""
        source_path = os.fspath(source_path)
        if not os.path.isfile(source_path):
            raise CheckpointError(f"cannot restore from {source_path}: no such file")
        try:
            source = _sqlite_connect(f"file:{quote(source_path)}?mode=ro", 5.0, uri=True)
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot open {source_path} to restore from: {exc}") from exc
        try:
            try:
                problems = [r[0] for r in source.execute("PRAGMA integrity_check")]
                tables = {
                    r[0]
                    for r in source.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
                version = (
                    source.execute(
                        "SELECT value FROM schema_meta WHERE key = 'schema_version'"
                    ).fetchone()
                    if "schema_meta" in tables
                    else None
                )
            except sqlite3.Error as exc:
                raise CheckpointError(
                    f"{source_path} is not a mneme SQLite cache ({exc}); nothing restored"
                ) from exc
            if problems != ["ok"]:
                raise CheckpointError(
                    f"{source_path} fails its integrity check ({'; '.join(problems[:5])}); "
                    "nothing restored"
                )
            if version is None:
                raise CheckpointError(
                    f"{source_path} is not a mneme SQLite cache (no schema_meta); nothing restored"
                )
            _backup(source, os.fspath(dest_path), 5.0)
        finally:
            source.close()
        return cls(dest_path)


def _backup(source: sqlite3.Connection, dest_path: str, timeout: float) -> None:
    """Copy ``source`` into ``dest_path`` with SQLite's online backup (a consistent copy
    even while other connections write); a new destination file gets mode 0600."""
    try:
        _create_private(dest_path)
        dest = _sqlite_connect(dest_path, timeout)
    except (OSError, sqlite3.Error) as exc:
        raise CheckpointError(f"cannot create {dest_path}: {exc}") from exc
    try:
        source.backup(dest)
    except sqlite3.Error as exc:
        raise CheckpointError(f"copying the cache to {dest_path} failed: {exc}") from exc
    finally:
        dest.close()
