"""Entries, vectors and stores for the tests of the pgvector search path."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import psycopg
import pytest

from mneme import StoredEntry
from mneme.stores.postgres import PostgresStore

T = TypeVar("T")
T0 = 1_700_000_000
DIM = 32


def fp(dim: int) -> str:
    return f"graphs-test-{dim}"


def unit(v: npt.ArrayLike) -> npt.NDArray[np.float32]:
    a = np.asarray(v, dtype=np.float64)
    return (a / np.linalg.norm(a)).astype(np.float32)


def entry(key: str, v: npt.ArrayLike, namespace: str = "default") -> StoredEntry:
    return StoredEntry(
        id=0,
        namespace=namespace,
        query_hash=key,
        query=f"question {key}",
        response=f"answer {key}",
        embedding=np.asarray(v, dtype="<f4").tobytes(),
        metadata=None,
        created_at=T0,
        last_accessed_at=T0,
        ttl=None,
        access_count=0,
    )


def vectors(n: int, seed: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 50), DIM))
    raw = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, DIM))
    out: npt.NDArray[np.float32] = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(
        np.float32
    )
    return out


@pytest.fixture
def stores() -> Iterator[list[PostgresStore]]:
    opened: list[PostgresStore] = []
    yield opened
    for store in opened:
        store.close()


def open_store(stores: list[PostgresStore], dsn: str, schema: str, **options: Any) -> PostgresStore:
    store = PostgresStore(dsn, schema=schema, use_pgvector=True, **options)
    store.open(fp(DIM), DIM)
    stores.append(store)
    return store


def fresh() -> str:
    return f"mneme_g_{uuid.uuid4().hex[:16]}"


def admin(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


def traced(conn: psycopg.Connection[Any], call: Callable[[], T]) -> tuple[T, str]:
    """``call()``'s result and the protocol messages it sent and received on ``conn``."""
    with tempfile.TemporaryFile() as trace:
        conn.pgconn.trace(trace.fileno())
        try:
            result = call()
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        return result, trace.read().decode("utf-8", "replace")


def search_params(namespace: str, q: npt.NDArray[np.float32], scan: int = 20) -> dict[str, Any]:
    """The parameters of the store's search statement, for running it by hand (EXPLAIN):
    the three nearest, every neighbour's entry joined (floor below any similarity)."""
    return {
        "ns": namespace,
        "q": q,
        "now": T0,
        "k": 3,
        "scan": scan,
        "gate": True,
        "floor": -1.0,
    }
