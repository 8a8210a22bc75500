"""Shared fixtures: store factories for the contract battery, embedders, clocks.

Tests that need no server live in ``tests/unit``; those that need Postgres, Redis or
moto's DynamoDB, and those parametrised over every store, in ``tests/backends``. This
conftest and the helper modules beside it (``pg_fixtures``, ``kv_fixtures``,
``_workers``, ``store_entries``, ``cache_helpers``, ...) serve both: pytest's
``pythonpath`` puts ``tests/`` on ``sys.path``, so they import as top-level modules,
in spawned worker processes too. Test modules import helpers, never each other.

Backend fixtures that need a server live in their own plugin modules
(``pg_fixtures``, ...). In CI (``MNEME_REQUIRE_BACKENDS=1``) a skipped backend test
fails the run: see ``pytest_runtest_makereport`` below.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mneme import MemoryStore, SQLiteStore
from mneme.stores.protocol import BatchStore
from mneme.testing import HashingEmbedder

pytest_plugins = ["pg_fixtures", "kv_fixtures", "pg_replication", "pgvector_helpers"]

StoreFactory = Callable[[], BatchStore]
"""Every store of this package has the batch methods; the contract tests them too."""

# Every store the contract battery runs against. Each name maps to a fixture that
# returns a zero-argument factory making a fresh, unopened store over the same
# backing data (calling it twice gives two handles on one store, for reopen tests),
# except for memory: a MemoryStore's entries end with its close, so each call makes a
# new, empty store, and tests of what survives a reopen take
# ``persistent_store_factory``, which leaves memory out.
STORE_BACKENDS = [
    "memory",
    "sqlite",
    "postgres",
    "postgres_pgvector",
    "postgres_async",
    "pgvector_async",
    "pg15",
    "redis",
    "dynamodb",
]


@pytest.fixture
def memory_store_factory() -> StoreFactory:
    return MemoryStore


@pytest.fixture
def sqlite_store_factory(tmp_path: Path) -> StoreFactory:
    path = str(tmp_path / "cache.db")
    return lambda: SQLiteStore(path)


PERSISTENT_BACKENDS = [b for b in STORE_BACKENDS if b != "memory"]


@pytest.fixture(params=STORE_BACKENDS)
def store_factory(request: pytest.FixtureRequest) -> StoreFactory:
    factory: StoreFactory = request.getfixturevalue(f"{request.param}_store_factory")
    return factory


@pytest.fixture(params=PERSISTENT_BACKENDS)
def persistent_store_factory(request: pytest.FixtureRequest) -> StoreFactory:
    """``store_factory`` for the stores whose entries outlive a handle's close."""
    factory: StoreFactory = request.getfixturevalue(f"{request.param}_store_factory")
    return factory


@pytest.fixture
def store(store_factory: StoreFactory) -> Iterator[BatchStore]:
    """A fresh store opened with the default test embedder's fingerprint and dim."""
    s = store_factory()
    s.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    yield s
    s.close()


EMBEDDER = HashingEmbedder(dim=64)


@pytest.fixture
def embedder() -> HashingEmbedder:
    return EMBEDDER


class FakeClock:
    """A settable clock for TTL and LRU tests (``SemanticCache(clock=...)``)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _backend_required() -> bool:
    return os.environ.get("MNEME_REQUIRE_BACKENDS") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and _backend_required() and _is_backend_test(item):
        report.outcome = "failed"
        report.longrepr = (
            f"backend test skipped in CI (MNEME_REQUIRE_BACKENDS=1): {report.longrepr}"
        )


def _is_backend_test(item: pytest.Item) -> bool:
    if item.get_closest_marker("backend") is not None:
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and any(
        v in STORE_BACKENDS and v not in ("memory", "sqlite") for v in callspec.params.values()
    )
