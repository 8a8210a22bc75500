"""Opening a target's store or cache for a command, with the embedder its meta names.

A command never loads a model: it opens the store with the fingerprint and dim the
cache records (``Meta``), or, for an import into an empty target, those of the dump
file. ``RecordedEmbedder`` stands in for the model; it refuses to embed, which no
command asks of it (dumps carry their embeddings, statistics read counters).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from mneme._errors import MnemeError
from mneme.cache.sync_cache import SemanticCache
from mneme.cli.target import Meta, Target
from mneme.stores.protocol import Store

__all__ = ["RecordedEmbedder", "open_cache", "open_store"]


class RecordedEmbedder:
    """The identity (fingerprint, dim) of the embedder a cache was written with."""

    def __init__(self, fingerprint: str, dim: int) -> None:
        self._fingerprint = fingerprint
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        raise MnemeError(
            f"the mneme command has no model for embedder {self._fingerprint!r}; "
            "embed text from Python with the real embedder"
        )


def make_store(target: Target, **pg_options: Any) -> Store:
    if target.is_postgres:
        return target.postgres_store(**pg_options)
    return target.sqlite_store()


@contextlib.contextmanager
def open_store(target: Target, meta: Meta, **pg_options: Any) -> Iterator[Store]:
    """The target's store, open with the embedder its meta records."""
    assert meta.fingerprint is not None and meta.dim is not None
    store = make_store(target, **pg_options)
    store.open(meta.fingerprint, meta.dim)
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def open_cache(
    target: Target, fingerprint: str, dim: int, **pg_options: Any
) -> Iterator[SemanticCache]:
    """A cache over the target's store, for the embedder (fingerprint, dim)."""
    store = make_store(target, **pg_options)
    with SemanticCache(store=store, embedder=RecordedEmbedder(fingerprint, dim)) as cache:
        yield cache
