"""An embedder for any OpenAI-compatible ``/embeddings`` HTTP endpoint (OpenAI, Azure
OpenAI, vLLM, Ollama, LM Studio, text-embeddings-inference ...), through httpx.

Install with ``pip install 'mneme-semantic-cache[http]'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mneme.embedders.base import EmbedderBase, check_count, checked_texts
from mneme.embedders.errors import EmbeddingServiceError, missing_extra

__all__ = ["OpenAIEmbedder"]


class OpenAIEmbedder(EmbedderBase):
    """Embeds with ``POST {base_url}/embeddings``, body ``{"model", "input": [...]}``.

    ``dim`` is the length of the vectors the model returns (checked on every answer);
    ``dimensions``, when given, is sent for models that can shorten their vectors.
    ``api_key`` defaults to the ``OPENAI_API_KEY`` environment variable (none is sent
    when neither is set, as local servers expect). ``batch_size`` bounds the texts per
    request in ``embed_many``. The fingerprint names the model and dim; pass
    ``fingerprint`` when two endpoints serve different weights under one model name.
    A failed request raises ``EmbeddingServiceError`` with the transport's error
    chained; on a ``get`` the cache counts that as a miss.
    """

    def __init__(
        self,
        model: str,
        *,
        dim: int,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        dimensions: int | None = None,
        timeout: float = 30.0,
        batch_size: int = 256,
        headers: Mapping[str, str] | None = None,
        fingerprint: str | None = None,
        client: Any = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty string")
        check_count("dim", dim)
        check_count("batch_size", batch_size)
        if dimensions is not None and dimensions != dim:
            raise ValueError(f"dimensions={dimensions} asks for vectors that are not dim={dim}")
        try:
            import httpx
        except ImportError as exc:
            missing_extra("OpenAIEmbedder (httpx)", "http", exc)
        self._httpx = httpx
        self._model = model
        self._dim = dim
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._url = base_url.rstrip("/") + "/embeddings"
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        sent = dict(headers or {})
        if key:
            sent.setdefault("Authorization", f"Bearer {key}")
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._owns_client = client is None
        self._headers = sent
        self._fingerprint = fingerprint or f"mneme.embedders.OpenAIEmbedder({model},dim={dim})"

    def embed_many(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Vectors for ``texts`` in order, ``batch_size`` texts per request."""
        items = checked_texts(texts)
        out = np.empty((len(items), self._dim), dtype=np.float32)
        for start in range(0, len(items), self._batch_size):
            chunk = items[start : start + self._batch_size]
            out[start : start + len(chunk)] = self._request(chunk)
        return out

    def _request(self, texts: list[str]) -> npt.NDArray[np.float32]:
        body: dict[str, Any] = {"model": self._model, "input": texts}
        if self._dimensions is not None:
            body["dimensions"] = self._dimensions
        try:
            response = self._client.post(self._url, json=body, headers=self._headers)
            response.raise_for_status()
            payload = response.json()
        except self._httpx.HTTPStatusError as exc:
            raise EmbeddingServiceError(
                f"{self._url} answered HTTP {exc.response.status_code}: {exc.response.text[:200]}"
            ) from exc
        except (self._httpx.HTTPError, ValueError) as exc:
            raise EmbeddingServiceError(f"embedding request to {self._url} failed: {exc}") from exc
        return self._vectors(payload, len(texts))

    def _vectors(self, payload: Any, n: int) -> npt.NDArray[np.float32]:
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or len(data) != n:
            got = len(data) if isinstance(data, list) else "no"
            raise EmbeddingServiceError(
                f"{self._url} returned {got} embeddings for {n} texts (expected a 'data' list)"
            )
        try:
            rows = sorted(data, key=lambda item: int(item.get("index", 0)))
            matrix = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise EmbeddingServiceError(
                f"{self._url} returned malformed embeddings: {exc!r}"
            ) from exc
        if matrix.shape != (n, self._dim):
            raise EmbeddingServiceError(
                f"{self._url} returned vectors of shape {matrix.shape[1:]}, expected dim "
                f"{self._dim} (check dim= against the model)"
            )
        return matrix

    def close(self) -> None:
        """Close the HTTP client this embedder made (not one passed in)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> OpenAIEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
