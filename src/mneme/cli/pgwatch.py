"""Live progress of a Postgres index build, read from ``pg_stat_progress_create_index``
on a second connection while the build runs (pgvector counts the rows it has put into
the HNSW graph as ``tuples_done``)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from mneme._types import Progress, ProgressFn
from mneme.cli.target import Target

__all__ = ["watch_index_build", "with_index_watch"]

_POLL_S = 1.0


@contextlib.contextmanager
def watch_index_build(
    target: Target, table: str, total: int, progress: ProgressFn
) -> Iterator[None]:
    """Report ("index", rows so far, ``total``) every second until the block ends."""
    stop = threading.Event()

    def poll() -> None:
        from psycopg import sql

        query = sql.SQL(
            "SELECT tuples_done FROM pg_catalog.pg_stat_progress_create_index "
            "WHERE relid = {}::regclass"
        ).format(sql.Literal(f"{target.schema}.{table}"))
        try:
            with target.connect() as conn:
                last = -1
                while not stop.wait(_POLL_S):
                    row = conn.execute(query).fetchone()
                    done = min(int(row[0]), total) if row and row[0] is not None else last
                    if done > last and done < total:
                        progress(Progress("index", done, total))
                        last = done
        except Exception:  # a watcher that cannot watch only loses the live count
            return

    thread = threading.Thread(target=poll, name="mneme-index-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def with_index_watch(
    target: Target, progress: ProgressFn
) -> tuple[ProgressFn, contextlib.ExitStack]:
    """A ``ProgressFn`` that starts a watcher when the library reports an index build
    starting and stops it when the build ends; close the stack to stop it on errors."""
    stack = contextlib.ExitStack()

    def relay(p: Progress) -> None:
        if p.task == "index" and p.done == 0 and p.total:
            stack.enter_context(watch_index_build(target, "entry_vectors", p.total, progress))
        elif p.task == "index":
            stack.close()
        progress(p)

    return relay, stack
