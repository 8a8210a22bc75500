"""Which embedder a command that embeds (calibrate, bench) uses: ``--embedder
module:factory``, else the hashing embedder, which needs no model."""

from __future__ import annotations

import importlib

from mneme._embedder import Embedder
from mneme.cli.target import TargetError

__all__ = ["load_embedder"]


def load_embedder(spec: str | None, dim: int) -> Embedder:
    if spec is None:
        from mneme.testing import HashingEmbedder

        return HashingEmbedder(dim)
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise TargetError(f"--embedder {spec!r}: expected module:factory, e.g. mypkg.models:load")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise TargetError(f"--embedder {spec!r}: {exc}") from None
    embedder: Embedder = factory()
    return embedder
