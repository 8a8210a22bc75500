"""Move caches: re-embed one with a new embedder, or copy one into another store.

A cache is bound to the embedder that wrote it (its fingerprint and dim are stored),
so changing models means re-embedding (``reembed``): every entry's normalised query
goes through the new embedder and lands, with its response, metadata, timestamps and
TTL, in a new cache file. ``copy_cache`` moves a filled cache, a mneme 1.0 one
included, into any store with the same embedder. Sources are only read.

From the command line, the one-command move of a 1.0 cache to Postgres with pgvector:

    python -m mneme.tools.migrate copy cache.db --to postgresql://host/db --pgvector
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

import numpy as np

from mneme._embedder import AsyncEmbedder, BatchEmbedder, Embedder, to_sync_embedder
from mneme._errors import CorruptCacheError, MnemeError
from mneme._policy import normalize_query, to_bytes, unit_vector
from mneme._types import Progress, ProgressFn, StoredEntry
from mneme.stores.protocol import Store
from mneme.stores.sqlite import SQLiteStore
from mneme.tools.cache_copy import copy_cache

__all__ = ["areembed", "copy_cache", "main", "reembed"]

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


# -- command line ---------------------------------------------------------------------


def _target(to: str, schema: str, pgvector: bool) -> tuple[Store, str]:
    """The store ``--to`` names, and how to show it (a DSN without its password)."""
    if to.startswith(("postgresql://", "postgres://")) or "=" in to:
        from mneme.stores.postgres import PostgresStore
        from mneme.stores.postgres.dsn import mask_dsn

        store = PostgresStore(to, schema=schema, use_pgvector=pgvector)
        shown = f"{mask_dsn(to)} (schema {schema}{', pgvector' if pgvector else ''})"
        return store, shown
    if pgvector:
        raise SystemExit("--pgvector needs a PostgreSQL DSN as --to")
    return SQLiteStore(to), to


class _Bar:
    """A progress bar on stderr, redrawn in place."""

    def __init__(self, width: int = 30) -> None:
        self._width = width

    def __call__(self, step: Progress) -> None:
        done, total = step.done, step.total or 0
        filled = self._width * done // max(total, 1)
        percent = 100 * done // max(total, 1)
        bar = "#" * filled + "." * (self._width - filled)
        sys.stderr.write(f"\r[{bar}] {done}/{total} entries ({percent}%)")
        sys.stderr.flush()
        if done >= total:
            sys.stderr.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mneme.tools.migrate",
        description="Move a cache into another store (e.g. mneme 1.0's SQLite file to "
        "PostgreSQL with pgvector).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    copy = commands.add_parser(
        "copy",
        help="copy every entry of a cache into another store",
        description="Copy every entry (with quotas and counters) of SOURCE, a SQLite "
        "cache file or a mneme 1.0 checkpoint archive, into the store --to names. "
        "SOURCE is only read.",
    )
    copy.add_argument("source", help="a SQLite cache file or a mneme 1.0 checkpoint (tar.gz)")
    copy.add_argument(
        "--to",
        required=True,
        metavar="TARGET",
        help="a PostgreSQL DSN (postgresql://...) or the path of a SQLite cache file",
    )
    copy.add_argument("--schema", default="mneme", help="Postgres schema (default: mneme)")
    copy.add_argument(
        "--pgvector", action="store_true", help="search in Postgres with pgvector (HNSW)"
    )
    copy.add_argument("--batch-size", type=int, default=1000, help="entries per transaction")
    copy.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    target, shown = _target(args.to, args.schema, args.pgvector)
    try:
        n = copy_cache(
            args.source,
            target,
            batch_size=args.batch_size,
            progress=None if args.quiet else _Bar(),
        )
    except (MnemeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"copied {n} entries from {args.source} to {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
