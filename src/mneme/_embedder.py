"""Embedder protocols and the sync/async bridges."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@runtime_checkable
class Embedder(Protocol):
    """Turns text into a 1-D float32 vector of length ``dim``.

    ``fingerprint`` names the model and version; it is stored with the cache so a
    cache is never read with vectors from another model. An embedder may also offer
    ``embed_many(texts) -> 2-D array``; batch calls then use it once per batch.
    """

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def embed(self, text: str) -> npt.NDArray[np.float32]: ...


@runtime_checkable
class AsyncEmbedder(Protocol):
    """The async twin of ``Embedder``."""

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    async def embed(self, text: str) -> npt.NDArray[np.float32]: ...


@runtime_checkable
class BatchEmbedder(Protocol):
    """An embedder that can embed a batch in one call."""

    def embed_many(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


class _SyncToAsync:
    def __init__(self, inner: Embedder) -> None:
        self._inner = inner

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def fingerprint(self) -> str:
        return self._inner.fingerprint

    async def embed(self, text: str) -> npt.NDArray[np.float32]:
        return await asyncio.to_thread(self._inner.embed, text)


class _AsyncToSync:
    def __init__(self, inner: AsyncEmbedder) -> None:
        self._inner = inner

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def fingerprint(self) -> str:
        return self._inner.fingerprint

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._inner.embed(text))
        raise RuntimeError(
            "to_sync_embedder: embed() was called inside a running event loop; "
            "await the async embedder directly instead"
        )


def to_async_embedder(embedder: Embedder | AsyncEmbedder) -> AsyncEmbedder:
    """Wrap a sync embedder so ``embed`` runs in a worker thread."""
    if isinstance(embedder, _AsyncToSync):
        return embedder._inner
    if asyncio.iscoroutinefunction(embedder.embed):
        return embedder  # type: ignore[return-value]
    return _SyncToAsync(embedder)  # type: ignore[arg-type]


def to_sync_embedder(embedder: AsyncEmbedder | Embedder) -> Embedder:
    """Wrap an async embedder so ``embed`` runs its coroutine to completion.

    Raises ``RuntimeError`` (mentioning "running event loop") when called from inside
    one, where blocking would deadlock.
    """
    if isinstance(embedder, _SyncToAsync):
        return embedder._inner
    if not asyncio.iscoroutinefunction(embedder.embed):
        return embedder  # type: ignore[return-value]
    return _AsyncToSync(embedder)  # type: ignore[arg-type]
