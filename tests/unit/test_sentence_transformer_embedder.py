"""SentenceTransformerEmbedder without PyTorch: a stand-in object with ``encode`` takes
the model's place, and a hidden sentence-transformers shows the missing-extra error."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from mneme import MemoryStore, SemanticCache
from mneme.embedders import SentenceTransformerEmbedder
from mneme.testing import HashingEmbedder


class StandIn:
    """Answers like SentenceTransformer.encode, and records the calls."""

    def __init__(self, dim: int = 24, *, with_dimension: bool = True) -> None:
        self.inner = HashingEmbedder(dim=dim)
        self.calls: list[tuple[list[str], dict[str, Any]]] = []
        self.name_or_path = "stand-in/model"
        if with_dimension:
            self.get_sentence_embedding_dimension = lambda: dim

    def encode(self, texts: Sequence[str], **kwargs: Any) -> npt.NDArray[np.float32]:
        self.calls.append((list(texts), kwargs))
        return np.stack([self.inner.embed(t) * 3.0 for t in texts])  # not unit: see below


def test_wraps_encode_with_normalised_batches() -> None:
    model = StandIn()
    emb = SentenceTransformerEmbedder(model, batch_size=7)
    assert emb.dim == 24
    assert emb.fingerprint == "mneme.embedders.SentenceTransformerEmbedder(stand-in/model,dim=24)"
    out = emb.embed_many(["a b", "c d"])
    assert out.shape == (2, 24) and out.dtype == np.float32
    assert model.calls[-1] == (
        ["a b", "c d"],
        {
            "batch_size": 7,
            "normalize_embeddings": True,
            "convert_to_numpy": True,
            "show_progress_bar": False,
        },
    )
    assert emb.embed("x").shape == (24,)
    assert emb.embed_many([]).shape == (0, 24)


def test_dimension_probed_when_the_model_cannot_say() -> None:
    model = StandIn(dim=12, with_dimension=False)
    emb = SentenceTransformerEmbedder(model, fingerprint="my-model-v3")
    assert emb.dim == 12
    assert emb.fingerprint == "my-model-v3"
    assert model.calls[0][0] == ["dimension probe"]


def test_a_cache_on_the_adapter() -> None:
    emb = SentenceTransformerEmbedder(StandIn(dim=64))
    with SemanticCache(store=MemoryStore(), embedder=emb, similarity_threshold=0.8) as cache:
        cache.put("What is the capital of France?", "Paris.")
        hit = cache.get("What is the capital city of France?")
        assert hit is not None and hit.response == "Paris."


def test_bad_arguments_and_outputs() -> None:
    with pytest.raises(TypeError, match="encode"):
        SentenceTransformerEmbedder(object())
    with pytest.raises(TypeError, match="model_kwargs"):
        SentenceTransformerEmbedder(StandIn(), device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        SentenceTransformerEmbedder(StandIn(), batch_size=0)
    liar = StandIn(dim=8)
    liar.get_sentence_embedding_dimension = lambda: 9
    with pytest.raises(ValueError, match="dim 8, not 9"):
        SentenceTransformerEmbedder(liar).embed("x")


def test_missing_extra_is_named() -> None:
    code = (
        "import sys\nsys.modules['sentence_transformers'] = None\n"
        "from mneme.embedders import SentenceTransformerEmbedder, EmbedderUnavailableError\n"
        "try:\n    SentenceTransformerEmbedder('all-MiniLM-L6-v2')\n"
        "except EmbedderUnavailableError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "'sentence-transformers' extra" in out, out
