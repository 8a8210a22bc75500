"""Faults under load: SQLite on a full or read-only disk.

A file that may not grow (RLIMIT_FSIZE in a child process, SIGXFSZ ignored, so writes
fail with EFBIG), a tmpfs that fills up (ENOSPC) and one remounted read-only. Each
fault is a clear ``StoreBackendError`` naming the file and the operation, never an
error outside the ``MnemeError`` tree, and afterwards the file passes its integrity
check and holds every entry written before the fault.

Postgres stopped and restarted under load is in ``tests/backends/test_faults_postgres.py``.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _workers import DIM, basis, embedder, sqlite_under_fsize_limit
from mneme import MnemeError, SemanticCache, SQLiteStore, StoreBackendError

pytestmark = pytest.mark.slow


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
