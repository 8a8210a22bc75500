"""SQLiteStore's on-disk schema and the migrations that bring an older file forward.

Version 1 is the layout mneme 1.0 wrote; it is read as it is found, so a 1.0 cache
file opens in place. Going to version 2 rewrites what 1.0 did differently: the
entries table (1.0 required metadata and stored "no metadata" as "{}"), the version
counter (kept as text) and the counters (a JSON document in ``schema_meta`` rather
than rows of ``cache_counters``), then adds change tracking. Every step runs inside
the opening transaction, so a failure leaves the file as it was.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable

from mneme._errors import SchemaMigrationError

__all__ = ["SCHEMA_VERSION", "migrate"]

SCHEMA_VERSION = 2

log = logging.getLogger("mneme")

_ENTRIES = """
CREATE TABLE {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    query_hash TEXT NOT NULL,
    query TEXT NOT NULL,
    response TEXT NOT NULL,
    embedding BLOB NOT NULL,
    metadata TEXT,
    created_at INTEGER NOT NULL,
    last_accessed_at INTEGER NOT NULL,
    ttl INTEGER,
    access_count INTEGER NOT NULL DEFAULT 0,
    UNIQUE (namespace, query_hash)
)"""
_ENTRY_INDEXES = (
    "CREATE INDEX idx_entries_ns_lru ON entries (namespace, last_accessed_at, id)",
    "CREATE INDEX idx_entries_created_at ON entries (created_at)",
)
_OTHER_TABLES = (
    """CREATE TABLE cache_counters (
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        value INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (namespace, name)
    )""",
    """CREATE TABLE namespace_quotas (
        namespace TEXT PRIMARY KEY,
        max_entries INTEGER NOT NULL
    )""",
    """CREATE TABLE multi_process_state (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )""",
    """CREATE TABLE schema_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    "INSERT INTO multi_process_state (key, value) VALUES ('version_counter', 0)",
)
_COUNTERS_META_KEY = "counters"  # where mneme 1.0 kept its counters, as JSON


def _create_v1(conn: sqlite3.Connection) -> None:
    conn.execute(_ENTRIES.format(name="entries"))
    for statement in (*_ENTRY_INDEXES, *_OTHER_TABLES):
        conn.execute(statement)


def _from_v1(conn: sqlite3.Connection) -> None:
    if _written_by_1_0(conn):
        _rebuild_entries(conn)
        _rebuild_version_counter(conn)
        _move_counters(conn)
    # The version at which each row was last written, so another process can fetch
    # just the rows inserted or replaced since the version it last saw.
    conn.execute("ALTER TABLE entries ADD COLUMN changed_version INTEGER NOT NULL DEFAULT 0")
    conn.execute("CREATE INDEX idx_entries_changed ON entries (changed_version)")


# _MIGRATIONS[n] takes an on-disk schema from version n to n + 1 (0 is an empty file).
_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_create_v1, _from_v1)


def _written_by_1_0(conn: sqlite3.Connection) -> bool:
    """mneme 1.0's entries table declares metadata NOT NULL; ours allows NULL."""
    columns = {row[1]: row[3] for row in conn.execute("PRAGMA table_info(entries)")}
    return bool(columns.get("metadata"))


def _rebuild_entries(conn: sqlite3.Connection) -> None:
    # SQLite cannot drop a NOT NULL constraint: copy into a new table. Ids are kept,
    # and so is the AUTOINCREMENT high-water mark, so no id is ever handed out twice.
    (high,) = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone() or (
        0,
    )
    conn.execute(_ENTRIES.format(name="entries_v2"))
    conn.execute(
        "INSERT INTO entries_v2 (id, namespace, query_hash, query, response, embedding, "
        "metadata, created_at, last_accessed_at, ttl, access_count) "
        "SELECT id, namespace, query_hash, query, response, embedding, metadata, "
        "created_at, last_accessed_at, ttl, access_count FROM entries ORDER BY id"
    )
    conn.execute("DROP TABLE entries")
    conn.execute("ALTER TABLE entries_v2 RENAME TO entries")
    conn.execute(
        "UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'entries'", (int(high),)
    )
    if conn.execute("SELECT 1 FROM sqlite_sequence WHERE name = 'entries'").fetchone() is None:
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('entries', ?)", (high,))
    for statement in _ENTRY_INDEXES:
        conn.execute(statement)


def _rebuild_version_counter(conn: sqlite3.Connection) -> None:
    # 1.0 kept the counter as text; the rest of its coordination state means nothing here.
    row = conn.execute(
        "SELECT value FROM multi_process_state WHERE key = 'version_counter'"
    ).fetchone()
    version = int(row[0]) if row is not None and str(row[0]).strip().isdigit() else 0
    conn.execute("DROP TABLE multi_process_state")
    conn.execute(_OTHER_TABLES[2])
    conn.execute(
        "INSERT INTO multi_process_state (key, value) VALUES ('version_counter', ?)",
        (version,),
    )


def _move_counters(conn: sqlite3.Connection) -> None:
    row = conn.execute(
        "SELECT value FROM schema_meta WHERE key = ?", (_COUNTERS_META_KEY,)
    ).fetchone()
    if row is None:
        return
    try:
        saved = {str(k): int(v) for k, v in json.loads(row[0]).items()}
    except (ValueError, TypeError, AttributeError):
        log.warning("mneme: the 1.0 counters in this cache file are unreadable; dropped")
        saved = {}
    for key, value in saved.items():
        namespace, _, name = key.rpartition(":")
        if namespace and name:
            conn.execute(
                "INSERT INTO cache_counters (namespace, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT(namespace, name) DO UPDATE SET value = value + excluded.value",
                (namespace, name, value),
            )
    conn.execute("DELETE FROM schema_meta WHERE key = ?", (_COUNTERS_META_KEY,))


def on_disk_version(conn: sqlite3.Connection, path: str) -> int:
    """The schema version of the file behind ``conn``; 0 when it is empty."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "schema_meta" in tables:
        row = conn.execute("SELECT value FROM schema_meta WHERE key = 'schema_version'").fetchone()
        if row is not None and str(row[0]).isdigit():
            return int(row[0])
        if "entries" in tables:
            raise SchemaMigrationError(
                f"{path} has no readable schema version; it is not a cache this mneme can migrate"
            )
        return 0
    if tables - {"sqlite_sequence"}:
        raise SchemaMigrationError(
            f"{path} is a SQLite database but not a mneme cache; point the cache at a new file"
        )
    return 0


def migrate(conn: sqlite3.Connection, path: str, target: int = SCHEMA_VERSION) -> None:
    """Bring the file up to ``target`` inside the caller's transaction."""
    on_disk = on_disk_version(conn, path)
    if on_disk > target:
        raise SchemaMigrationError(
            f"{path} has schema version {on_disk}, this mneme writes version {target}; "
            "upgrade mneme to open it"
        )
    if on_disk == target:
        return
    try:
        for step in _MIGRATIONS[on_disk:target]:
            step(conn)
    except sqlite3.Error as exc:
        raise SchemaMigrationError(
            f"{path} (schema version {on_disk}) could not be migrated to version {target}: "
            f"{exc}; nothing was changed. Import it into a new cache instead: "
            f"python -m mneme.tools.migrate copy {path} --to NEW.db"
        ) from exc
    conn.execute(
        "INSERT INTO schema_meta (key, value) VALUES ('schema_version', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (str(target),),
    )
    if on_disk == 1:
        log.info("mneme: migrated %s from schema version 1 (mneme 1.0) to %d", path, target)
