"""Helpers shared by the SemanticCache and AsyncSemanticCache tests.

A 4-dimensional table embedder whose texts sit at chosen cosines from one query, a
metrics hook that records events, direct reads of the store behind a cache, and a
native async embedder.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from mneme import SemanticCache, Stats, Store
from mneme.testing import HashingEmbedder, TableEmbedder

DIM = 4
E0 = [1.0, 0.0, 0.0, 0.0]


def at_cos(s: float) -> list[float]:
    """A unit vector whose cosine with E0 is ``s``."""
    return [s, math.sqrt(1.0 - s * s), 0.0, 0.0]


# The query "query" sits on E0; candidates sit at chosen cosines from it.
TABLE: dict[str, list[float]] = {
    "query": E0,
    "other query": E0,
    "c99": at_cos(0.99),
    "c98": at_cos(0.98),
    "c97": at_cos(0.97),
    "c96": at_cos(0.96),
    "c95": at_cos(0.95),
    "c90": at_cos(0.90),
    "c50": at_cos(0.50),
    "far": [0.0, 0.0, 1.0, 0.0],
    "zero": [0.0, 0.0, 0.0, 0.0],
}


def table() -> TableEmbedder:
    return TableEmbedder(TABLE, dim=DIM)


class Events:
    """A metrics hook that records what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, fields: Mapping[str, Any]) -> None:
        self.calls.append((event, dict(fields)))

    def of(self, event: str) -> list[dict[str, Any]]:
        return [f for e, f in self.calls if e == event]

    def miss_reasons(self) -> list[str]:
        return [f["reason"] for f in self.of("miss")]

    def take(self) -> list[tuple[str, str]]:
        """(event, reason-or-layer-or-count) since the last take, then forget them."""
        out = []
        for event, f in self.calls:
            detail = f.get("reason", f.get("layer", f.get("count")))
            out.append((event, str(detail)))
        self.calls.clear()
        return out


CacheMaker = Callable[..., SemanticCache]


def store_of(cache: SemanticCache) -> Store:
    return cache._store


def entry_for(cache: SemanticCache, text: str, namespace: str = "default") -> Any:
    """The stored entry for a query, looked up by the cache's own key: the SHA-256 of
    the query with whitespace runs collapsed to one space, trimmed, and casefolded."""
    normalised = " ".join(text.split()).casefold()
    qhash = hashlib.sha256(normalised.encode("utf-8")).hexdigest()
    return store_of(cache).get_by_hash(namespace, qhash)


def counters(s: Stats) -> tuple[Any, ...]:
    return (
        s.namespace,
        s.entries,
        s.hits_exact,
        s.hits_semantic,
        s.misses,
        s.evictions,
        s.expirations,
    )


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


class AsyncHashing:
    """A native async embedder (``async def embed``), optionally slow, that counts."""

    def __init__(self, dim: int = 32, delay: float = 0.0) -> None:
        self.inner = HashingEmbedder(dim=dim)
        self.delay = delay
        self.calls = 0
        self.finished = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    async def embed(self, text: str) -> npt.NDArray[np.float32]:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        self.finished += 1
        return self.inner.embed(text)
