"""An embedder for a sentence-transformers model you already have (it brings PyTorch).

Install with ``pip install 'mneme-semantic-cache[sentence-transformers]'``, or pass a loaded model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mneme.embedders.base import EmbedderBase, check_count, checked_texts
from mneme.embedders.errors import missing_extra

__all__ = ["SentenceTransformerEmbedder"]


class SentenceTransformerEmbedder(EmbedderBase):
    """Wraps ``SentenceTransformer.encode``, normalised, as a mneme embedder.

    ``model`` is a model name or path (loaded with ``SentenceTransformer(model,
    **model_kwargs)``, importing sentence-transformers only then) or an object with
    ``encode(texts, **kwargs)``. The fingerprint names the model; pass ``fingerprint``
    for an object whose name would not tell two models apart.
    """

    def __init__(
        self,
        model: str | Any,
        *,
        fingerprint: str | None = None,
        batch_size: int = 32,
        **model_kwargs: Any,
    ) -> None:
        check_count("batch_size", batch_size)
        if isinstance(model, str):
            name = model
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                missing_extra(
                    "SentenceTransformerEmbedder (sentence-transformers)",
                    "sentence-transformers",
                    exc,
                )
            model = SentenceTransformer(model, **model_kwargs)
        elif model_kwargs:
            raise TypeError("model_kwargs apply only when model is a name to load")
        else:
            name = _model_name(model)
        if not callable(getattr(model, "encode", None)):
            raise TypeError(f"model must be a name or have encode(), got {type(model).__name__}")
        self._model = model
        self._batch_size = batch_size
        self._dim = _dimension(model)
        self._fingerprint = fingerprint or (
            f"mneme.embedders.SentenceTransformerEmbedder({name},dim={self._dim})"
        )

    def embed_many(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        items = checked_texts(texts)
        if not items:
            return np.empty((0, self._dim), dtype=np.float32)
        raw = self._model.encode(
            items,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        matrix = np.asarray(raw, dtype=np.float32).reshape(len(items), -1)
        if matrix.shape[1] != self._dim:
            raise ValueError(f"model returned vectors of dim {matrix.shape[1]}, not {self._dim}")
        return matrix


def _model_name(model: Any) -> str:
    card = getattr(model, "model_card_data", None)
    name = getattr(card, "base_model", None) or getattr(model, "name_or_path", None)
    return str(name) if name else type(model).__name__


def _dimension(model: Any) -> int:
    for attr in ("get_sentence_embedding_dimension", "get_embedding_dimension"):
        fn = getattr(model, attr, None)
        if callable(fn):
            value = fn()
            if isinstance(value, int) and value > 0:
                return value
    probe = np.asarray(
        model.encode(["dimension probe"], normalize_embeddings=True, convert_to_numpy=True)
    )
    return int(probe.reshape(1, -1).shape[1])
