"""SQLiteStore behaviour beyond the shared contract: files, pragmas, schema, checkpoints,
concurrency. (MemoryStore's own limit is checked here too.)"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import EMBEDDER
from mneme import (
    CacheClosedError,
    CheckpointError,
    CorruptCacheError,
    MemoryStore,
    SchemaMigrationError,
    SQLiteStore,
    StoreBackendError,
)
from mneme.stores import sqlite_schema as schema_module
from store_entries import make_entry

FP, DIM = EMBEDDER.fingerprint, EMBEDDER.dim


def conn_of(store: SQLiteStore) -> sqlite3.Connection:
    conn = store._conn
    assert conn is not None
    return conn


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cache.db"


@pytest.fixture
def opened(db_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(str(db_path))
    store.open(FP, DIM)
    yield store
    store.close()


# -- files and pragmas ------------------------------------------------------------------


def test_constructor_touches_nothing(db_path: Path) -> None:
    SQLiteStore(str(db_path))
    assert not db_path.exists()


def test_new_file_is_private(db_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = SQLiteStore(str(db_path))
        store.open(FP, DIM)
        store.insert(make_entry("a"))
    finally:
        os.umask(old)
    try:
        assert mode_of(db_path) == 0o600
        for suffix in ("-wal", "-shm"):
            side = db_path.with_name(db_path.name + suffix)
            if side.exists():
                assert mode_of(side) == 0o600
    finally:
        store.close()


def test_existing_file_keeps_its_mode(db_path: Path) -> None:
    db_path.touch()
    db_path.chmod(0o640)
    store = SQLiteStore(str(db_path))
    store.open(FP, DIM)
    store.close()
    assert mode_of(db_path) == 0o640


def test_pragmas(db_path: Path) -> None:
    store = SQLiteStore(str(db_path), timeout=2.5, cache_size_kb=4_000)
    store.open(FP, DIM)
    try:
        conn = conn_of(store)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2_500
        assert conn.execute("PRAGMA cache_size").fetchone()[0] == -4_000
    finally:
        store.close()


def test_in_memory_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore(":memory:")
    store.open(FP, DIM)
    try:
        id_ = store.insert(make_entry("a"))
        got = store.get_by_id(id_)
        assert got is not None and got.query_hash == "a"
        assert store.integrity_check() is True
    finally:
        store.close()
    assert list(tmp_path.iterdir()) == []


def test_constructor_validates_arguments() -> None:
    with pytest.raises(ValueError, match="timeout"):
        SQLiteStore(":memory:", timeout=-1)
    with pytest.raises(ValueError, match="cache_size_kb"):
        SQLiteStore(":memory:", cache_size_kb=0)


def test_closed_store_stays_closed_and_a_new_one_sees_the_file(
    opened: SQLiteStore, db_path: Path
) -> None:
    opened.insert(make_entry("a"))
    opened.close()
    with pytest.raises(CacheClosedError, match="closed"):
        opened.open(FP, DIM)
    again = SQLiteStore(str(db_path))
    again.open(FP, DIM)
    try:
        assert again.count() == 1
    finally:
        again.close()


# -- schema and migrations --------------------------------------------------------------


def test_schema_is_provisioned_and_stamped(opened: SQLiteStore) -> None:
    conn = conn_of(opened)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "entries",
        "cache_counters",
        "namespace_quotas",
        "multi_process_state",
        "schema_meta",
    } <= tables
    meta = dict(conn.execute("SELECT key, value FROM schema_meta").fetchall())
    assert meta == {
        "schema_version": str(SQLiteStore.schema_version),
        "embedder_fingerprint": FP,
        "embedder_dim": str(DIM),
    }
    assert SQLiteStore.schema_version == 2 == len(schema_module._MIGRATIONS)
    indexes = {
        tuple(c[2] for c in conn.execute(f"PRAGMA index_info({name!r})"))
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries'"
        )
    }
    assert ("namespace", "last_accessed_at", "id") in indexes
    assert ("created_at",) in indexes
    assert ("namespace", "query_hash") in indexes
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'entries'").fetchone()[0]
    assert "AUTOINCREMENT" in sql


def _set_schema_version(path: Path, version: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_meta SET value = ? WHERE key = 'schema_version'", (version,))
    conn.close()


def test_newer_schema_asks_to_upgrade(db_path: Path) -> None:
    store = SQLiteStore(str(db_path))
    store.open(FP, DIM)
    store.close()
    _set_schema_version(db_path, SQLiteStore.schema_version + 1)
    newer = SQLiteStore(str(db_path))
    with pytest.raises(SchemaMigrationError, match="upgrade"):
        newer.open(FP, DIM)
    newer.close()


def test_migration_steps_run_in_order_at_open(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(str(db_path))
    store.open(FP, DIM)
    id_ = store.insert(make_entry("kept"))
    store.close()

    def add_notes(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE notes (body TEXT)")

    next_version = SQLiteStore.schema_version + 1
    monkeypatch.setattr(schema_module, "_MIGRATIONS", (*schema_module._MIGRATIONS, add_notes))
    monkeypatch.setattr(SQLiteStore, "schema_version", next_version)
    upgraded = SQLiteStore(str(db_path))
    upgraded.open(FP, DIM)
    try:
        conn = conn_of(upgraded)
        assert upgraded.read_meta("schema_version") == str(next_version)
        assert conn.execute("SELECT COUNT(*) FROM notes").fetchone()[0] == 0
        assert upgraded.get_by_id(id_) is not None
    finally:
        upgraded.close()


def test_failed_migration_changes_nothing(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SQLiteStore(str(db_path))
    store.open(FP, DIM)
    store.close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("migration failed")

    current = SQLiteStore.schema_version
    monkeypatch.setattr(schema_module, "_MIGRATIONS", (*schema_module._MIGRATIONS, broken))
    monkeypatch.setattr(SQLiteStore, "schema_version", current + 1)
    with pytest.raises(RuntimeError, match="migration failed"):
        SQLiteStore(str(db_path)).open(FP, DIM)
    with sqlite3.connect(db_path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        version = conn.execute(
            "SELECT value FROM schema_meta WHERE key = 'schema_version'"
        ).fetchone()[0]
    conn.close()
    assert "half_done" not in tables
    assert version == str(current)


def test_version_1_file_gains_change_tracking(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file written by the first schema version keeps its rows and, once upgraded,
    # reports rows written after the upgrade as changed.
    monkeypatch.setattr(SQLiteStore, "schema_version", 1)
    old = SQLiteStore(str(db_path))
    old.open(FP, DIM)
    old.close()
    monkeypatch.undo()
    e = make_entry("kept")
    with sqlite3.connect(db_path) as conn:
        kept = conn.execute(
            "INSERT INTO entries (namespace, query_hash, query, response, embedding, "
            "created_at, last_accessed_at, access_count) VALUES (?, ?, ?, ?, ?, 1, 1, 0) "
            "RETURNING id",
            (e.namespace, e.query_hash, e.query, e.response, e.embedding),
        ).fetchone()[0]
    conn.close()
    store = SQLiteStore(str(db_path))
    store.open(FP, DIM)
    try:
        assert store.read_meta("schema_version") == "2"
        assert store.get_by_id(kept) is not None
        version = store.read_version_counter()
        assert [r[0] for r in store.iter_changed_vectors(0)] == []
        fresh = store.insert(make_entry("fresh"))
        store.insert(make_entry("kept"))  # a replacement keeps its id
        changed = [r[0] for r in store.iter_changed_vectors(version)]
        assert changed == sorted([kept, fresh])
        assert [r[0] for r in store.iter_changed_vectors(store.read_version_counter())] == []
    finally:
        store.close()


def test_foreign_sqlite_database_is_refused(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    conn.close()
    with pytest.raises(SchemaMigrationError, match="not a mneme cache"):
        SQLiteStore(str(db_path)).open(FP, DIM)


# -- corruption and errors --------------------------------------------------------------


def test_garbage_file_is_corrupt(db_path: Path) -> None:
    db_path.write_bytes(b"this is not a database " * 500)
    store = SQLiteStore(str(db_path))
    with pytest.raises(CorruptCacheError) as info:
        store.open(FP, DIM)
    assert str(db_path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_integrity_check_reports_damaged_pages(db_path: Path) -> None:
    store = SQLiteStore(str(db_path))
    store.open(FP, DIM)
    store.insert_many([make_entry(f"h{i}", response="x" * 200) for i in range(500)])
    store.close()  # the last connection checkpoints the WAL into the file
    data = bytearray(db_path.read_bytes())
    page = 4096
    assert len(data) > 40 * page
    for offset in range(len(data) - 20 * page, len(data) - 2 * page, page):
        data[offset + 8 : offset + 600] = b"\xa5" * 592
    db_path.write_bytes(bytes(data))
    damaged = SQLiteStore(str(db_path))
    try:
        with pytest.raises(CorruptCacheError):
            damaged.open(FP, DIM)
            damaged.integrity_check()
    finally:
        damaged.close()


def test_missing_directory_is_a_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "cache.db"
    with pytest.raises(StoreBackendError, match="connect") as info:
        SQLiteStore(str(path)).open(FP, DIM)
    assert str(path) in str(info.value)
    assert info.value.__cause__ is not None


def test_lock_timeout_is_wrapped_and_rolled_back(db_path: Path) -> None:
    store = SQLiteStore(str(db_path), timeout=0.05)
    store.open(FP, DIM)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreBackendError, match="insert") as info:
            store.insert(make_entry("a"))
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert str(db_path) in str(info.value)
        blocker.execute("ROLLBACK")
        # The failed call left no transaction open behind it.
        assert store.insert(make_entry("a")) > 0
        assert store.count() == 1
    finally:
        blocker.close()
        store.close()


# -- snapshots --------------------------------------------------------------------------


def test_snapshot_and_restore_round_trip(opened: SQLiteStore, tmp_path: Path) -> None:
    ids = opened.insert_many([make_entry(f"h{i}", metadata={"i": i}) for i in range(10)])
    opened.set_namespace_quota("default", 50)
    opened.add_counters("default", {"misses": 3})
    version = opened.read_version_counter()
    snapshot = tmp_path / "snap.db"
    opened.snapshot_to(str(snapshot))
    opened.insert(make_entry("after-snapshot"))
    assert mode_of(snapshot) == 0o600

    restored_path = tmp_path / "restored.db"
    restored = SQLiteStore.restore_from(str(snapshot), str(restored_path))
    assert mode_of(restored_path) == 0o600
    assert repr(restored) == f"SQLiteStore({str(restored_path)!r})"  # unopened, as in 1.0
    restored.open(FP, DIM)
    try:
        assert [e.id for e in restored.iter_all()] == ids
        assert restored.get_by_hash("default", "after-snapshot") is None
        assert restored.get_by_hash("default", "h3") == opened.get_by_hash("default", "h3")
        assert restored.get_namespace_quota("default") == 50
        assert restored.read_counters("default")["misses"] == 3
        assert restored.read_version_counter() == version
        assert restored.integrity_check() is True
    finally:
        restored.close()


def test_snapshot_of_an_in_memory_store(tmp_path: Path) -> None:
    store = SQLiteStore(":memory:")
    store.open(FP, DIM)
    store.insert(make_entry("a"))
    store.snapshot_to(str(tmp_path / "snap.db"))
    store.close()
    copy = SQLiteStore(str(tmp_path / "snap.db"))
    copy.open(FP, DIM)
    assert copy.count() == 1
    copy.close()


@pytest.mark.parametrize("kind", ["garbage", "foreign", "missing"])
def test_restore_refuses_what_is_not_a_mneme_cache(tmp_path: Path, kind: str) -> None:
    source = tmp_path / "source.db"
    if kind == "garbage":
        source.write_bytes(b"\x00garbage" * 1000)
    elif kind == "foreign":
        with sqlite3.connect(source) as conn:
            conn.execute("CREATE TABLE users (name TEXT)")
        conn.close()
    dest = tmp_path / "dest.db"
    with pytest.raises(CheckpointError):
        SQLiteStore.restore_from(str(source), str(dest))
    assert not dest.exists()


def test_memory_store_refuses_snapshots_and_says_what_to_use() -> None:
    store = MemoryStore()
    store.open(FP, DIM)
    with pytest.raises(CheckpointError, match=r"SemanticCache\.dumps"):
        store.snapshot_to("/tmp/never-written.db")
    with pytest.raises(CheckpointError, match=r"SemanticCache\.loads"):
        MemoryStore.restore_from("/tmp/never-written.db", "/tmp/never-either.db")
    store.close()
    assert not Path("/tmp/never-written.db").exists()


# -- what the store reads ---------------------------------------------------------------


def test_iter_vectors_reads_no_responses_or_metadata(opened: SQLiteStore) -> None:
    opened.insert_many([make_entry(f"h{i}", metadata={"m": i}) for i in range(5)])
    statements: list[str] = []
    conn_of(opened).set_trace_callback(statements.append)
    try:
        assert len(list(opened.iter_vectors())) == 5
    finally:
        conn_of(opened).set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert selects
    for sql in selects:
        columns = sql.split("FROM")[0].lower()
        assert columns.split() == ["select", "id,", "namespace,", "embedding"]


def test_iteration_reads_in_batches(opened: SQLiteStore) -> None:
    opened.insert_many([make_entry(f"h{i}") for i in range(2_500)])
    statements: list[str] = []
    conn_of(opened).set_trace_callback(statements.append)
    try:
        iterator = opened.iter_all()
        next(iterator)
        assert len(statements) == 1  # one batch fetched, not the whole table
        assert sum(1 for _ in iterator) == 2_499
    finally:
        conn_of(opened).set_trace_callback(None)
    assert len(statements) == 3
    assert all("LIMIT" in s for s in statements)


# -- concurrency ------------------------------------------------------------------------


def test_threads_share_one_store(opened: SQLiteStore) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(100):
                id_ = opened.insert(make_entry(f"t{t}-{i}"))
                opened.update_access(id_, i)
                opened.get_by_id(id_)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert opened.count() == 400
    assert opened.read_version_counter() == 400


def _insert_from_process(path: str, worker: int, n: int) -> None:
    store = SQLiteStore(path, timeout=30.0)
    store.open(FP, DIM)
    try:
        for i in range(n):
            store.insert(make_entry(f"w{worker}-{i}"))
        store.insert_many([make_entry(f"w{worker}-batch-{i}") for i in range(n)])
    finally:
        store.close()


def test_two_processes_write_one_file(db_path: Path) -> None:
    store = SQLiteStore(str(db_path))
    store.open(FP, DIM)
    store.close()
    ctx = multiprocessing.get_context("spawn")
    n = 150
    workers = [
        ctx.Process(target=_insert_from_process, args=(str(db_path), w, n)) for w in range(2)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [p.exitcode for p in workers] == [0, 0]
    store = SQLiteStore(str(db_path))
    store.open(FP, DIM)
    try:
        assert store.count() == 4 * n
        assert store.read_version_counter() == 2 * (n + 1)
        ids = [e.id for e in store.iter_all()]
        assert len(set(ids)) == 4 * n
        assert store.integrity_check() is True
    finally:
        store.close()


# -- MemoryStore's own limit ------------------------------------------------------------


def test_memory_store_capacity() -> None:
    store = MemoryStore(max_entries=2)
    store.open(FP, DIM)
    store.insert(make_entry("a"))
    store.insert(make_entry("b"))
    assert store.insert(make_entry("a", response="replaced")) > 0  # a replace needs no room
    with pytest.raises(StoreBackendError, match="capacity"):
        store.insert(make_entry("c"))
    assert store.count() == 2
    with pytest.raises(ValueError, match="max_entries"):
        MemoryStore(max_entries=0)
