"""Copy a filled cache into another store: ``copy_cache``.

The source is a mneme 1.0 checkpoint archive, a SQLite cache file (mneme 1.0's or
this package's) or any open store; the target is any store, e.g.
``PostgresStore(dsn, use_pgvector=True)``. Entries keep their query, response,
embedding, metadata, timestamps, TTL and access count (they get new ids); each
namespace's quota and counters come along. Files are only read: a SQLite file or an
archive is first copied (SQLite's backup) into a temporary file, which is what gets
migrated and read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import replace

from mneme._errors import CheckpointError, CorruptCacheError
from mneme._types import Progress, ProgressFn, StoredEntry
from mneme.cache.v1_archive import is_v1_archive, read_manifest, restore_v1_archive
from mneme.stores.protocol import BatchStore, Store
from mneme.stores.sqlite import SQLiteStore

__all__ = ["copy_cache"]

log = logging.getLogger("mneme.migrate")


def copy_cache(
    source: str | os.PathLike[str] | Store,
    target: Store,
    *,
    batch_size: int = 1000,
    progress: ProgressFn | None = None,
) -> int:
    """Copy every entry of ``source`` into ``target``; returns how many were copied.

    ``source``: a path to a mneme 1.0 checkpoint archive or to a SQLite cache file
    (told apart by content), or an open ``Store``. ``target``: a store not yet open;
    it is opened with the source's embedder fingerprint and dim (so it refuses to mix
    embedders) and closed at the end. Entries stream in batches of ``batch_size``
    (one ``insert_many`` each when the target has it); an entry already in the target
    under the same namespace and query is replaced. ``progress`` receives
    ``Progress("copy", entries copied, entries in the source)`` at the start and after
    each batch, and each batch is logged at INFO on "mneme.migrate".
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    with _opened_source(source) as (reader, fingerprint, dim):
        target.open(fingerprint, dim)
        try:
            total = reader.count()
            done = 0
            if progress is not None:
                progress(Progress("copy", done, total))
            for batch in _batches(reader, batch_size):
                _insert(target, [replace(e, id=0) for e in batch])
                done += len(batch)
                log.info("copy: %d / %d entries", done, total)
                if progress is not None:
                    progress(Progress("copy", done, total))
            _copy_namespace_state(reader, target)
            return done
        finally:
            target.close()


@contextlib.contextmanager
def _opened_source(
    source: str | os.PathLike[str] | Store,
) -> Iterator[tuple[Store, str, int]]:
    if not isinstance(source, str | os.PathLike):
        stored_fp = source.read_meta("embedder_fingerprint")
        stored_dim = source.read_meta("embedder_dim")
        if stored_fp is None or stored_dim is None:
            raise CheckpointError(
                f"{source!r} records no embedder: open it (with its embedder) before copying"
            )
        yield source, stored_fp, int(stored_dim)
        return
    path = os.fspath(source)
    with tempfile.TemporaryDirectory(prefix="mneme-copy-") as tmp:
        snapshot = os.path.join(tmp, "source.db")
        if is_v1_archive(path):
            fingerprint, dim = _archive_embedder(path)
            restore_v1_archive(path, snapshot, fingerprint, dim)
        else:
            SQLiteStore.restore_from(path, snapshot)  # read-only, checked, consistent
            fingerprint, dim = _file_embedder(snapshot, path)
        reader = SQLiteStore(snapshot)
        reader.open(fingerprint, dim)  # migrates the copy, never the source
        try:
            yield reader, fingerprint, dim
        finally:
            reader.close()


def _archive_embedder(path: str) -> tuple[str, int]:
    try:
        with tarfile.open(path, "r:gz") as archive:
            manifest = read_manifest(archive, path)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path!r}: {exc}; it is truncated or not a mneme 1.0 "
            "checkpoint (tar.gz)"
        ) from exc
    fingerprint, dim = manifest.get("embedder_fingerprint"), manifest.get("embedder_dim")
    if not isinstance(fingerprint, str) or not isinstance(dim, int):
        raise CheckpointError(f"the manifest of checkpoint {path!r} names no embedder")
    return fingerprint, dim


def _file_embedder(snapshot: str, path: str) -> tuple[str, int]:
    import sqlite3

    conn = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    try:
        meta = dict(conn.execute("SELECT key, value FROM schema_meta").fetchall())
    except sqlite3.Error as exc:
        raise CorruptCacheError(f"{path} is not a readable mneme SQLite cache: {exc}") from exc
    finally:
        conn.close()
    try:
        return str(meta["embedder_fingerprint"]), int(meta["embedder_dim"])
    except (KeyError, ValueError) as exc:
        raise CorruptCacheError(f"{path} has no embedder recorded in schema_meta") from exc


def _batches(store: Store, n: int) -> Iterator[list[StoredEntry]]:
    batch: list[StoredEntry] = []
    for entry in store.iter_all():
        batch.append(entry)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _insert(target: Store, entries: list[StoredEntry]) -> None:
    if isinstance(target, BatchStore):
        target.insert_many(entries)
    else:
        for entry in entries:
            target.insert(entry)


def _copy_namespace_state(source: Store, target: Store) -> None:
    """Quotas, and counters when both stores keep them, of every namespace with entries."""
    for ns in source.list_namespaces():
        quota = source.get_namespace_quota(ns)
        if quota is not None:
            target.set_namespace_quota(ns, quota)
        if isinstance(source, BatchStore) and isinstance(target, BatchStore):
            deltas = {name: n for name, n in source.read_counters(ns).items() if n}
            if deltas:
                target.add_counters(ns, deltas)
