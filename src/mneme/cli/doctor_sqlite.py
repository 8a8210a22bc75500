"""``doctor`` checks of a SQLite cache file."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from mneme.cli.findings import Finding
from mneme.cli.target import Target
from mneme.stores.sqlite import SQLiteStore

__all__ = ["check_sqlite"]

_FREE_PAGES_WARN = 0.25


def check_sqlite(target: Target) -> list[Finding]:
    assert target.path is not None
    meta = target.read_meta()
    assert meta is not None
    found = [
        Finding("ok", "file", f"{target.path} is a mneme cache"),
        Finding("ok", "embedder", f"{meta.fingerprint} (dim {meta.dim})"),
    ]
    version = int(meta.schema_version or 0)
    if version < SQLiteStore.schema_version:
        found.append(
            Finding(
                "warn",
                "schema",
                f"version {version}; this mneme writes {SQLiteStore.schema_version}",
                "open it once with this mneme (any command that writes, e.g. mneme import, "
                "or SemanticCache) to migrate it",
            )
        )
    else:
        found.append(Finding("ok", "schema", f"version {version}"))
    with closing(sqlite3.connect(f"file:{target.path}?mode=ro", uri=True)) as conn:
        check = conn.execute("PRAGMA quick_check").fetchone()
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    if check is None or check[0] != "ok":
        found.append(
            Finding(
                "fail",
                "integrity",
                f"PRAGMA quick_check: {check[0] if check else 'no answer'}",
                "restore from a snapshot (SQLiteStore.restore_from) or rebuild the cache "
                "with mneme export / mneme import",
            )
        )
    else:
        found.append(Finding("ok", "integrity", "PRAGMA quick_check: ok"))
    if pages and free / pages > _FREE_PAGES_WARN:
        found.append(
            Finding(
                "warn",
                "free space",
                f"{free:,} of {pages:,} pages are free ({100 * free // pages}%)",
                f"sqlite3 {target.path} 'VACUUM' while no process has it open",
            )
        )
    else:
        found.append(Finding("ok", "free space", f"{free:,} of {pages:,} pages free"))
    return found
