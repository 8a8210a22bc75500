"""Bad and edge-case inputs to SemanticCache: everything is validated before anything
is stored, so a refused put leaves the cache as it was. Oversized or unstorable text,
non-JSON metadata, NaN or infinite embeddings and bad TTLs raise ValueError, an
embedding of the wrong shape raises EmbedderDimensionError, a bad embedding on ``get``
is a miss, and configuration misuse in the constructor is a ValueError."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import FakeClock
from mneme import EmbedderDimensionError, MemoryStore, SemanticCache, SQLiteStore, Store
from mneme.testing import HashingEmbedder

DIM = 16


@pytest.fixture(params=["memory", "sqlite"])
def cache(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[SemanticCache]:
    store: Store = (
        MemoryStore() if request.param == "memory" else SQLiteStore(str(tmp_path / "in.db"))
    )
    c = SemanticCache(
        store=store,
        embedder=HashingEmbedder(dim=DIM),
        clock=clock,
        max_query_bytes=64,
        max_response_bytes=128,
        max_metadata_bytes=64,
    )
    c.put("already here", "kept")
    yield c
    c.close()


def assert_unchanged(cache: SemanticCache) -> None:
    assert cache.stats().entries == 1
    assert cache.list_namespaces() == ["default"]


@pytest.mark.parametrize(
    ("kwargs", "limit_name"),
    [
        ({"query": "q" * 65, "response": "r"}, "max_query_bytes"),
        ({"query": "é" * 33, "response": "r"}, "max_query_bytes"),  # 66 UTF-8 bytes
        ({"query": "q", "response": "r" * 129}, "max_response_bytes"),
        ({"query": "q", "response": "r", "metadata": {"k": "v" * 64}}, "max_metadata_bytes"),
    ],
)
def test_oversized_rejected(cache: SemanticCache, kwargs: dict[str, Any], limit_name: str) -> None:
    with pytest.raises(ValueError, match=limit_name):
        cache.put(**kwargs)
    assert_unchanged(cache)


def test_sizes_at_the_limit_accepted(cache: SemanticCache) -> None:
    cache.put("q" * 64, "r" * 128, metadata={"k": "v" * 54})  # {"k": "..."} is 64 bytes
    assert cache.stats().entries == 2
    hit = cache.get("q" * 64)
    assert hit is not None
    assert hit.response == "r" * 128


def test_default_limits() -> None:
    with SemanticCache(store=MemoryStore(), embedder=HashingEmbedder(dim=DIM)) as c:
        c.put("q" * 32_768, "r")
        with pytest.raises(ValueError, match="max_query_bytes"):
            c.put("q" * 32_769, "r")
        with pytest.raises(ValueError, match="max_response_bytes"):
            c.put("q", "r" * (4_194_304 + 1))
        with pytest.raises(ValueError, match="max_metadata_bytes"):
            c.put("q", "r", metadata={"k": "v" * 65_536})
        assert c.stats().entries == 1


class _Opaque:
    pass


@pytest.mark.parametrize(
    "metadata",
    [
        {"s": {1, 2}},
        {"o": _Opaque()},
        {"nan": math.nan},
        {"inf": math.inf},
        {"b": b"bytes"},
    ],
)
def test_non_json_metadata_rejected(cache: SemanticCache, metadata: Mapping[Any, Any]) -> None:
    with pytest.raises(ValueError, match="JSON"):
        cache.put("q", "r", metadata=metadata)
    assert_unchanged(cache)


def test_metadata_round_trips_as_json(cache: SemanticCache) -> None:
    meta = {"n": 1, "f": 0.5, "s": "é", "l": [1, None], "d": {"t": True}}
    cache.put("q", "r", metadata=meta)
    hit = cache.get("q")
    assert hit is not None
    assert hit.metadata == meta


@pytest.mark.parametrize(
    "embedding",
    [
        [math.nan] + [0.0] * (DIM - 1),
        [math.inf] + [0.0] * (DIM - 1),
        [-math.inf] + [1.0] * (DIM - 1),
    ],
)
def test_non_finite_embedding_on_put(cache: SemanticCache, embedding: list[float]) -> None:
    with pytest.raises(ValueError, match="NaN or infinity"):
        cache.put("q", "r", embedding=embedding)
    assert_unchanged(cache)


@pytest.mark.parametrize("length", [0, DIM - 1, DIM + 1])
def test_wrong_length_embedding_on_put(cache: SemanticCache, length: int) -> None:
    with pytest.raises(EmbedderDimensionError, match="dim"):
        cache.put("q", "r", embedding=[1.0] * length)
    assert_unchanged(cache)


def test_two_dimensional_embedding_on_put(cache: SemanticCache) -> None:
    with pytest.raises(EmbedderDimensionError, match="dim"):
        cache.put("q", "r", embedding=np.ones((1, DIM)))
    assert_unchanged(cache)


def test_non_finite_embedding_on_get_is_a_miss(cache: SemanticCache) -> None:
    assert cache.get("something new", embedding=[math.nan] * DIM) is None
    assert cache.stats().misses == 1


def test_given_embedding_is_normalised(cache: SemanticCache) -> None:
    cache.put("scaled", "r", embedding=[3.0] + [0.0] * (DIM - 1))
    entry = cache._store.get_by_hash("default", _hash("scaled"))
    assert entry is not None
    vector = np.frombuffer(entry.embedding, dtype="<f4")
    assert vector.tolist() == [1.0] + [0.0] * (DIM - 1)


def _hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"query": "a\x00b", "response": "r"},
        {"query": "q", "response": "a\x00b"},
        {"query": "q", "response": "r", "namespace": "n\x00s"},
        {"query": "lone \ud800 surrogate", "response": "r"},
        {"query": "q", "response": "lone \udfff surrogate"},
        {"query": "q", "response": "r", "namespace": "\ud800"},
    ],
)
def test_unstorable_text_rejected(cache: SemanticCache, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        cache.put(**kwargs)
    assert_unchanged(cache)


def test_nul_namespace_on_get_rejected(cache: SemanticCache) -> None:
    with pytest.raises(ValueError, match="NUL"):
        cache.get("q", namespace="a\x00")


@pytest.mark.parametrize("ttl", [0, -1, -0.5, math.nan, math.inf])
def test_bad_ttl_rejected(cache: SemanticCache, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        cache.put("q", "r", ttl=ttl)
    assert_unchanged(cache)


@pytest.mark.parametrize("ttl", [0, -5])
def test_bad_default_ttl_rejected(ttl: int) -> None:
    with pytest.raises(ValueError, match="ttl"):
        SemanticCache(store=MemoryStore(), embedder=HashingEmbedder(dim=DIM), default_ttl=ttl)


def test_fractional_ttl_rounds_up(cache: SemanticCache, clock: FakeClock) -> None:
    cache.put("q", "r", ttl=0.5)
    assert cache.get("q") is not None
    clock.advance(1)
    assert cache.get("q") is None


def test_empty_query(cache: SemanticCache) -> None:
    cache.put("", "answer to nothing")
    hit = cache.get("   ")  # normalises to ""
    assert hit is not None
    assert (hit.layer, hit.response) == ("exact", "answer to nothing")


def test_empty_response_served_exactly_never_semantically(cache: SemanticCache) -> None:
    # The exact layer serves whatever was stored, without running the validator, so
    # the exact query gets "" back; the semantic layer runs the default validator,
    # which refuses "" and deletes the entry.
    e0 = [1.0] + [0.0] * (DIM - 1)
    cache.put("what is the capital of france", "", embedding=e0)
    exact = cache.get("What is the capital of France")
    assert exact is not None
    assert (exact.layer, exact.response) == ("exact", "")
    assert cache.get("what is the capital city of france", embedding=e0) is None
    assert cache.stats().entries == 1  # only "already here" is left
    assert cache.get("what is the capital of france") is None


def test_zero_embedding_stored_not_found_semantically(cache: SemanticCache) -> None:
    cache.set_similarity_threshold(-1.0)
    cache.put("zero vector", "z", embedding=[0.0] * DIM)
    assert cache.stats().entries == 2
    miss = cache.get("anything at all", embedding=[1.0] * DIM)
    assert miss is None or miss.response != "z"
    hit = cache.get("zero vector")
    assert hit is not None
    assert hit.layer == "exact"


def test_zero_query_vector_is_a_miss(cache: SemanticCache) -> None:
    cache.set_similarity_threshold(-1.0)
    assert cache.get("new", embedding=[0.0] * DIM) is None
    assert cache.stats().misses == 1


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_max_entries(bad: int) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        SemanticCache(store=MemoryStore(), embedder=HashingEmbedder(dim=DIM), max_entries=bad)


def test_bad_namespace_quota() -> None:
    with pytest.raises(ValueError, match="namespace_quotas"):
        SemanticCache(
            store=MemoryStore(), embedder=HashingEmbedder(dim=DIM), namespace_quotas={"a": 0}
        )


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"index_backend": "faiss"}, "index_backend"),
        ({"multi_process_mode": "shared"}, "multi_process_mode"),
        ({"max_query_bytes": 0}, "max_query_bytes"),
        ({"max_response_bytes": -1}, "max_response_bytes"),
        ({"max_metadata_bytes": 0}, "max_metadata_bytes"),
        ({"stale_check_interval": -1.0}, "stale_check_interval"),
    ],
)
def test_bad_configuration(kwargs: dict[str, Any], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        SemanticCache(store=MemoryStore(), embedder=HashingEmbedder(dim=DIM), **kwargs)


def test_failed_constructor_leaves_store_usable(tmp_path: Path) -> None:
    path = str(tmp_path / "ok.db")
    with pytest.raises(ValueError):
        SemanticCache(path, HashingEmbedder(dim=DIM), index_backend="faiss")  # type: ignore[arg-type]
    with SemanticCache(path, HashingEmbedder(dim=DIM)) as c:
        c.put("q", "r")
        assert c.stats().entries == 1
