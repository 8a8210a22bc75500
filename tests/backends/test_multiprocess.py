"""Several processes on one store: what each multi_process_mode promises.

* "single": the in-process index sees only this process's writes. Another process's
  new entries are found by their exact query, not semantically; deleted or evicted
  entries are never served, since each candidate is re-read from the store.
* "stale-tolerant": before a semantic lookup the cache catches up with every change
  other processes made (inserts, replacements, deletes, evictions), at most once per
  check interval when one is set; the exact layer always asks the store.
* "mmap-shared" is refused with an error that names the alternatives.
* A store that searches vectors itself (pgvector) is current in any mode.

Cache A lives in this process; cache B runs in a spawned child on the same SQLite file
or the same Postgres schema (BYTEA path; pgvector for the always-current case) and is
driven by commands over a pipe.
Vectors are explicit unit basis vectors, so "found by this embedding" is unambiguous:
distinct entries have cosine 0, and a probe with an entry's own vector has cosine 1.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _workers import StoreSpec, basis, cache_server, embedder, make_store
from mneme import AsyncSemanticCache, MultiProcessLockError, SemanticCache, Store

T0 = 1_700_000_000.0


class Remote:
    """Cache B in a child process."""

    def __init__(self, spec: StoreSpec, **kwargs: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=cache_server, args=(child, spec, kwargs))
        self.proc.start()
        child.close()
        assert self._recv() == "ready"

    def _recv(self) -> Any:
        if not self.conn.poll(60):
            raise AssertionError("the child cache did not answer within 60 s")
        status, value = self.conn.recv()
        if status != "ok":
            raise AssertionError(f"the child cache failed: {value}")
        return value

    def __call__(self, *command: Any) -> Any:
        self.conn.send(command)
        return self._recv()

    def close(self) -> None:
        if self.proc.is_alive():
            self.conn.send(("close",))
            assert self._recv() == "closed"
        self.proc.join(30)
        self.conn.close()
        assert self.proc.exitcode == 0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.backend("postgres"))])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    if request.param == "sqlite":
        return ("sqlite", str(tmp_path / "shared.db"))
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema: str = request.getfixturevalue("pg_schema")
    return ("postgres", dsn, schema)


@pytest.fixture
def remote(spec: StoreSpec) -> Iterator[Remote]:
    """B: a cache at a later clock than A's, with a quota of 3 on namespace "q"."""
    b = Remote(spec, clock_start=T0 + 100, namespace_quotas={"q": 3})
    yield b
    b.close()


def cache_a(spec: StoreSpec, mode: str, interval: float = 0.0) -> SemanticCache:
    return SemanticCache(
        store=make_store(spec),
        embedder=embedder(),
        multi_process_mode=mode,  # type: ignore[arg-type]
        stale_check_interval=interval,
        namespace_quotas={"q": 3},
        clock=lambda: T0,
    )


def probe(cache: SemanticCache, i: int, namespace: str = "default") -> tuple[str, str] | None:
    """What a lookup by basis vector i finds (a query text no entry has). The text
    carries no number: the near-miss check would refuse "probe 6" against "new one"."""
    hit = cache.get("probe by vector", embedding=basis(i), namespace=namespace)
    return None if hit is None else (hit.layer, hit.response)


def seed(a: SemanticCache) -> None:
    a.put("keep", "keep-r", embedding=basis(0))
    a.put("replace me", "old", embedding=basis(1))
    a.put("delete me", "doomed", embedding=basis(2))
    for i in range(3):  # same clock: least recently used is the lowest id, e0
        a.put(f"e{i}", f"e{i}-r", embedding=basis(3 + i), namespace="q")
    # A has seen each of its entries through its own index.
    assert [probe(a, i) for i in range(3)] == [
        ("semantic", "keep-r"),
        ("semantic", "old"),
        ("semantic", "doomed"),
    ]


def changes_in_b(b: Remote) -> None:
    b("put", "new one", "new-r", basis(6), "default")
    b("put", "new two", "new2-r", basis(7), "default")
    b("put", "replace me", "new", basis(8), "default")
    assert b("delete", "delete me", "default") is True
    b("put", "e3", "e3-r", basis(9), "q")  # over the quota: evicts e0


def test_stale_tolerant_sees_every_kind_of_change(spec: StoreSpec, remote: Remote) -> None:
    with cache_a(spec, "stale-tolerant") as a:
        seed(a)
        changes_in_b(remote)
        assert probe(a, 6) == ("semantic", "new-r")  # inserted by B
        assert probe(a, 7) == ("semantic", "new2-r")
        assert probe(a, 8) == ("semantic", "new")  # replaced: the new vector ...
        assert probe(a, 1) is None  # ... and never the old one
        exact = a.get("replace me")
        assert exact is not None and (exact.layer, exact.response) == ("exact", "new")
        assert probe(a, 2) is None  # deleted by B
        assert a.get("delete me", embedding=basis(2)) is None
        assert probe(a, 3, "q") is None  # evicted by B
        assert a.get("e0", embedding=basis(3), namespace="q") is None
        assert [probe(a, i, "q") for i in (4, 5, 9)] == [
            ("semantic", "e1-r"),
            ("semantic", "e2-r"),
            ("semantic", "e3-r"),
        ]
        assert probe(a, 0) == ("semantic", "keep-r")
        assert (a.stats(namespace="default").entries, a.stats(namespace="q").entries) == (4, 3)
        assert a.stats(namespace="q").evictions == 1
        # A's own writes keep working alongside.
        a.put("from a", "a-r", embedding=basis(10))
    assert remote("get", "probe", basis(10), "default") is None  # B is in "single" mode
    assert remote("get", "from a", None, "default") == ("exact", "a-r")


def test_stale_tolerant_with_an_interval_catches_up_after_it(
    spec: StoreSpec, remote: Remote
) -> None:
    interval = 0.5
    guarded_rounds = 0
    with cache_a(spec, "stale-tolerant", interval) as a:
        a.put("keep", "keep-r", embedding=basis(0))
        for r in range(3):
            time.sleep(interval + 0.05)  # the next lookup is due a check
            t0 = time.monotonic()
            assert probe(a, 0) == ("semantic", "keep-r")  # checks: A is now current
            remote("put", f"new {r}", f"new {r}-r", basis(1 + r), "default")
            first = probe(a, 1 + r)
            if time.monotonic() - t0 < interval:
                # No check was due yet, so B's entry cannot be in A's index.
                assert first is None
                guarded_rounds += 1
            found = first
            for _ in range(100):  # bounded: about 5 s
                if found is not None:
                    break
                time.sleep(0.05)
                found = probe(a, 1 + r)
            assert found == ("semantic", f"new {r}-r")
            # The exact layer never waits for a check: it asks the store.
            exact = a.get(f"new {r}")
            assert exact is not None and exact.response == f"new {r}-r"
    assert guarded_rounds >= 1, "every round took longer than the interval; machine too slow"


def test_single_mode_does_not_see_other_processes_semantically(
    spec: StoreSpec, remote: Remote
) -> None:
    with cache_a(spec, "single") as a:
        seed(a)
        changes_in_b(remote)
        # New entries from B: found by their exact query, not by their vector.
        assert probe(a, 6) is None
        exact = a.get("new one")
        assert exact is not None and (exact.layer, exact.response) == ("exact", "new-r")
        # Deleted and evicted entries are never served (each candidate is re-read).
        assert probe(a, 2) is None
        assert probe(a, 3, "q") is None
        # A replaced entry keeps its id: A's index still holds its old vector, which
        # now leads to the new response; the new vector is unknown to A.
        assert probe(a, 1) == ("semantic", "new")
        assert probe(a, 8) is None
    # A cache opened afterwards builds its index from the store and sees it all.
    with cache_a(spec, "single") as fresh:
        assert [probe(fresh, i) for i in (6, 7, 8, 1, 2)] == [
            ("semantic", "new-r"),
            ("semantic", "new2-r"),
            ("semantic", "new"),
            None,
            None,
        ]


@pytest.mark.backend("pgvector")
def test_pgvector_store_is_always_current_without_any_mode(
    postgres_pgvector_store_factory: Callable[[], Store], postgres_dsn: str, pg_schema: str
) -> None:
    """A store that searches itself needs no multi-process mode: in "single" mode A
    sees every change B makes at its next lookup."""
    spec: StoreSpec = ("postgres-pgvector", postgres_dsn, pg_schema)
    with cache_a(spec, "single") as a:
        assert a.health().index_backend == "pgvector"
        seed(a)
        b = Remote(spec, clock_start=T0 + 100, namespace_quotas={"q": 3})
        try:
            changes_in_b(b)
        finally:
            b.close()
        assert [probe(a, i) for i in (6, 7, 8, 1, 2, 0)] == [
            ("semantic", "new-r"),
            ("semantic", "new2-r"),
            ("semantic", "new"),
            None,
            None,
            ("semantic", "keep-r"),
        ]
        assert probe(a, 3, "q") is None
        assert probe(a, 9, "q") == ("semantic", "e3-r")


def test_mmap_shared_is_refused_with_an_alternative(tmp_path: Path) -> None:
    path = tmp_path / "never-created.db"
    with pytest.raises(MultiProcessLockError, match="not supported") as info:
        SemanticCache(str(path), embedder(), multi_process_mode="mmap-shared")
    message = str(info.value)
    assert "'stale-tolerant'" in message and "use_pgvector=True" in message
    assert not path.exists()  # refused before anything was opened
    with pytest.raises(MultiProcessLockError, match="stale-tolerant"):
        AsyncSemanticCache(str(path), embedder(), multi_process_mode="mmap-shared")
    assert not path.exists()
