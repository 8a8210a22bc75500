"""Stored entries built by hand, for tests that talk to a store directly.

Shared by the store contract battery and the per-backend store tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conftest import EMBEDDER
from mneme import StoredEntry
from mneme._policy import to_bytes, unit_vector

T0 = 1_700_000_000


def vector_bytes(seed: int) -> bytes:
    """A deterministic unit vector of the test embedder's dim, as stored bytes."""
    rng = np.random.default_rng(seed)
    return to_bytes(unit_vector(rng.standard_normal(EMBEDDER.dim), EMBEDDER.dim))


def make_entry(
    query_hash: str = "h1",
    *,
    namespace: str = "default",
    query: str | None = None,
    response: str = "an answer",
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
    created_at: int = T0,
    last_accessed_at: int | None = None,
    ttl: int | None = None,
    access_count: int = 0,
) -> StoredEntry:
    return StoredEntry(
        id=0,
        namespace=namespace,
        query_hash=query_hash,
        query=f"query for {query_hash}" if query is None else query,
        response=response,
        embedding=vector_bytes(seed),
        metadata=metadata,
        created_at=created_at,
        last_accessed_at=created_at if last_accessed_at is None else last_accessed_at,
        ttl=ttl,
        access_count=access_count,
    )
