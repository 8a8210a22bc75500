"""The embedder the quickstart and the demo use: MiniLM when its extra is installed."""

from __future__ import annotations

import logging

from mneme._embedder import Embedder
from mneme.embedders.errors import EmbedderUnavailableError

__all__ = ["default_embedder"]

log = logging.getLogger("mneme")


def default_embedder() -> Embedder:
    """``MiniLM()`` (all-MiniLM-L6-v2, offline); without the ``minilm`` extra, a
    warning and ``mneme.testing.HashingEmbedder``, which matches words, not meaning."""
    from mneme.embedders.minilm import MiniLM

    try:
        return MiniLM()
    except EmbedderUnavailableError as exc:
        from mneme.testing import HashingEmbedder

        log.warning("mneme: %s; using mneme.testing.HashingEmbedder instead", exc)
        return HashingEmbedder(dim=384)
