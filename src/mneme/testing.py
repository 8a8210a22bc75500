"""Deterministic embedders for tests and examples.

``HashingEmbedder`` needs no model: texts that share words and character trigrams get
similar vectors, so paraphrases with overlapping wording land close together.
``TableEmbedder`` maps exact strings to given vectors, for tests that need to place
similarities precisely.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["HashingEmbedder", "TableEmbedder"]


class HashingEmbedder:
    """Lower-cased word and character-trigram features hashed with blake2b into
    ``dim`` buckets, L2-normalised. Stable across processes and Python versions."""

    def __init__(self, dim: int = 384, *, word_weight: float = 1.0) -> None:
        if dim < 1:
            raise ValueError("dim must be >= 1")
        self._dim = dim
        self._word_weight = word_weight

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"mneme.testing.HashingEmbedder(dim={self._dim},v1)"

    def _bucket(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        sign = 1.0 if value & 1 else -1.0
        return (value >> 1) % self._dim, sign

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        vec = np.zeros(self._dim, dtype=np.float64)
        lowered = text.lower()
        for word in lowered.split():
            idx, sign = self._bucket("w:" + word)
            vec[idx] += sign * self._word_weight
        padded = f"  {lowered}  "
        for i in range(len(padded) - 2):
            idx, sign = self._bucket("t:" + padded[i : i + 3])
            vec[idx] += sign
        norm = np.linalg.norm(vec)
        if norm > 0:
            vec /= norm
        return vec.astype(np.float32)

    def embed_many(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self.embed(text)
        return out


class TableEmbedder:
    """Maps exact strings to the vectors given; unknown text raises ``KeyError``."""

    def __init__(
        self, table: Mapping[str, Sequence[float] | npt.NDArray[np.floating]], *, dim: int
    ) -> None:
        self._dim = dim
        self._table: dict[str, npt.NDArray[np.float32]] = {}
        for text, vector in table.items():
            arr = np.asarray(vector, dtype=np.float32)
            if arr.shape != (dim,):
                raise ValueError(f"vector for {text!r} has shape {arr.shape}, expected ({dim},)")
            self._table[text] = arr
        self.calls = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"mneme.testing.TableEmbedder(dim={self._dim})"

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        self.calls += 1
        try:
            return self._table[text].copy()
        except KeyError:
            raise KeyError(f"TableEmbedder has no vector for {text!r}") from None
