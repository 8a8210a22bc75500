"""Re-embed a SQLite cache with a new embedder.

A cache is bound to the embedder that wrote it (its fingerprint and dim are stored),
so changing models means re-embedding: every entry's normalised query goes through the
new embedder and lands, with its response, metadata, timestamps and TTL, in a new cache
file. The source is only read.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

import numpy as np

from mneme._embedder import AsyncEmbedder, BatchEmbedder, Embedder, to_sync_embedder
from mneme._errors import CorruptCacheError
from mneme._policy import normalize_query, to_bytes, unit_vector
from mneme._types import Progress, ProgressFn, StoredEntry
from mneme.stores.sqlite import SQLiteStore

__all__ = ["areembed", "reembed"]

log = logging.getLogger("mneme.migrate")


def _stored_embedder(path: str) -> tuple[str, int]:
    """The fingerprint and dim a SQLite cache file was written with."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = dict(conn.execute("SELECT key, value FROM schema_meta").fetchall())
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CorruptCacheError(f"{path} is not a readable mneme SQLite cache: {exc}") from exc
    try:
        return str(meta["embedder_fingerprint"]), int(meta["embedder_dim"])
    except (KeyError, ValueError) as exc:
        raise CorruptCacheError(f"{path} has no embedder recorded in schema_meta") from exc


def _batches(entries: Iterable[StoredEntry], n: int) -> Iterator[list[StoredEntry]]:
    batch: list[StoredEntry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _embed(embedder: Embedder, texts: Sequence[str]) -> list[bytes]:
    if isinstance(embedder, BatchEmbedder):
        rows = list(np.asarray(embedder.embed_many(list(texts))))
    else:
        rows = [embedder.embed(t) for t in texts]
    return [to_bytes(unit_vector(r, embedder.dim)) for r in rows]


def reembed(
    source_path: str,
    dest_path: str,
    new_embedder: Embedder,
    *,
    batch_size: int = 64,
    progress: bool | ProgressFn = False,
    namespaces: Sequence[str] | None = None,
) -> int:
    """Copy every entry (or those of ``namespaces``) of the SQLite cache at
    ``source_path`` into a new cache at ``dest_path``, embedded by ``new_embedder``.
    Returns the number of entries written. ``progress=True`` logs each batch; a
    ``ProgressFn`` is called with task "reembed" (the total counts every entry of
    the source, so a namespace filter ends below it)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    fingerprint, dim = _stored_embedder(source_path)
    wanted = None if namespaces is None else set(namespaces)
    source = SQLiteStore(source_path)
    dest = SQLiteStore(dest_path)
    source.open(fingerprint, dim)
    try:
        dest.open(new_embedder.fingerprint, new_embedder.dim)
        try:
            total = source.count()
            done = 0
            if callable(progress):
                progress(Progress("reembed", 0, total))
            selected = (e for e in source.iter_all() if wanted is None or e.namespace in wanted)
            for batch in _batches(selected, batch_size):
                # The embedder sees the normalised query, as the cache's put does.
                vectors = _embed(new_embedder, [normalize_query(e.query) for e in batch])
                dest.insert_many(
                    [replace(e, id=0, embedding=v) for e, v in zip(batch, vectors, strict=True)]
                )
                done += len(batch)
                if callable(progress):
                    if done < total:
                        progress(Progress("reembed", done, total))
                elif progress:
                    log.info("reembed: %d / %d entries", done, total)
            if callable(progress):
                progress(Progress("reembed", done, done))
            return done
        finally:
            dest.close()
    finally:
        source.close()


async def areembed(
    source_path: str,
    dest_path: str,
    new_embedder: Embedder | AsyncEmbedder,
    *,
    batch_size: int = 64,
    progress: bool | ProgressFn = False,
    namespaces: Sequence[str] | None = None,
) -> int:
    """``reembed`` for async code: runs in a worker thread (an async embedder is
    driven from there), so the event loop stays free."""
    embedder = to_sync_embedder(new_embedder)
    return await asyncio.to_thread(
        reembed,
        source_path,
        dest_path,
        embedder,
        batch_size=batch_size,
        progress=progress,
        namespaces=namespaces,
    )
