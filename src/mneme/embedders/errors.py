"""Errors of the embedders in this package."""

from __future__ import annotations

from mneme._errors import MnemeError

__all__ = ["EmbedderUnavailableError", "EmbeddingServiceError", "missing_extra"]


class EmbedderUnavailableError(MnemeError, ImportError):
    """The embedder's optional dependencies or model file are not installed."""


class EmbeddingServiceError(MnemeError):
    """An embedding service failed or answered something that is not embeddings; the
    transport's error, if any, is chained as ``__cause__``."""


def missing_extra(what: str, extra: str, exc: BaseException | None = None) -> None:
    """Raise EmbedderUnavailableError naming the extra that brings ``what``."""
    raise EmbedderUnavailableError(
        f"{what} requires the optional {extra!r} extra: pip install 'mneme-semantic-cache[{extra}]'"
    ) from exc
