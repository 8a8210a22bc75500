"""Helpers every store shares: refusing a foreign embedder, and batch semantics."""

from __future__ import annotations

from collections.abc import Sequence

from mneme._errors import EmbedderDimensionError, EmbedderMismatchError
from mneme._types import StoredEntry

__all__ = ["check_embedder", "dedupe_batch"]


def check_embedder(
    stored_fp: str | None, stored_dim: int | None, fingerprint: str, dim: int, where: str
) -> None:
    """Refuse to open a store written by another embedder ."""
    if stored_fp is not None and stored_fp != fingerprint:
        raise EmbedderMismatchError(
            f"{where} was written by embedder {stored_fp!r}, not {fingerprint!r}; "
            "use mneme.tools.migrate.reembed to re-embed it with the new embedder"
        )
    if stored_dim is not None and stored_dim != dim:
        raise EmbedderDimensionError(
            f"{where} holds vectors of dim {stored_dim}, the embedder makes dim {dim}; "
            "use mneme.tools.migrate.reembed to re-embed it"
        )


def dedupe_batch(entries: Sequence[StoredEntry]) -> list[StoredEntry]:
    """Keep the last entry per (namespace, query_hash), in first-seen order, so a
    batch behaves as the same puts in a loop."""
    last: dict[tuple[str, str], StoredEntry] = {}
    for e in entries:
        last[(e.namespace, e.query_hash)] = e
    return list(last.values())
