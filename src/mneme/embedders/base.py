"""What the shipped embedders share: ``dim`` and ``fingerprint`` fixed at construction,
one text embedded as a batch of one, and the checks their arguments pass."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["EmbedderBase", "check_count", "checked_texts"]


class EmbedderBase:
    """A base for embedders whose work is ``embed_many``: they set ``_dim`` and
    ``_fingerprint`` in ``__init__``."""

    _dim: int
    _fingerprint: str

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        row: npt.NDArray[np.float32] = self.embed_many([text])[0]
        return row

    def embed_many(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        raise NotImplementedError


def checked_texts(texts: Sequence[object]) -> list[str]:
    """``texts`` as a list, each one a str (the error names the first that is not)."""
    items = list(texts)
    for n, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"text {n} must be a str, got {type(text).__name__}")
    return items  # type: ignore[return-value]


def check_count(name: str, value: object, *, allow_none: bool = False) -> None:
    """A positive int (``None`` too when ``allow_none``), else ValueError naming it."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
