"""SemanticCache end to end on a PostgresStore (BYTEA path, in-process index)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mneme import SemanticCache, StoredEntry
from mneme.stores.postgres.statements import ITER_VECTORS_SQL
from mneme.stores.postgres.store import PostgresStore
from mneme.testing import HashingEmbedder

pytestmark = pytest.mark.backend("postgres")

EMBEDDER = HashingEmbedder(dim=64)


def test_exact_semantic_and_miss_then_reopen(postgres_dsn: str, pg_schema: str) -> None:
    with SemanticCache(
        store=PostgresStore(postgres_dsn, schema=pg_schema),
        embedder=EMBEDDER,
        similarity_threshold=0.8,
    ) as cache:
        cache.put("What is the capital of France?", "Paris", metadata={"source": "atlas"})
        cache.put("How do I boil an egg?", "Ten minutes", namespace="kitchen")

        exact = cache.get("  what is the CAPITAL of france?  ")
        assert exact is not None
        assert (exact.layer, exact.response, exact.similarity) == ("exact", "Paris", 1.0)
        assert exact.metadata == {"source": "atlas"}

        semantic = cache.get("What is the capital of France")
        assert semantic is not None
        assert (semantic.layer, semantic.response) == ("semantic", "Paris")
        assert 0.8 <= semantic.similarity < 1.0

        assert cache.get("Quarterly revenue of a bakery") is None
        assert cache.get("How do I boil an egg?") is None  # other namespace
        assert cache.get("How do I boil an egg?", namespace="kitchen") is not None

    with SemanticCache(
        store=PostgresStore(postgres_dsn, schema=pg_schema), embedder=EMBEDDER
    ) as again:
        hit = again.get("What is the capital of France?")
        assert hit is not None and hit.response == "Paris"
        assert again.list_namespaces() == ["default", "kitchen"]
        assert again.stats(namespace="default").hits_exact >= 1


class RecordingStore(PostgresStore):
    """Remembers which bulk readers the cache used."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: list[str] = []

    def iter_vectors(self, after_id: int = 0) -> Iterator[tuple[int, str, bytes]]:
        self.calls.append("iter_vectors")
        return super().iter_vectors(after_id)

    def iter_all(self) -> Iterator[StoredEntry]:
        self.calls.append("iter_all")
        return super().iter_all()

    def iter_since(self, last_id: int) -> Iterator[StoredEntry]:
        self.calls.append("iter_since")
        return super().iter_since(last_id)


def test_index_rebuild_at_open_reads_only_vectors(postgres_dsn: str, pg_schema: str) -> None:
    with SemanticCache(
        store=PostgresStore(postgres_dsn, schema=pg_schema), embedder=EMBEDDER
    ) as cache:
        for i in range(25):
            cache.put(f"question number {i}", f"answer {i}")

    store = RecordingStore(postgres_dsn, schema=pg_schema)
    with SemanticCache(store=store, embedder=EMBEDDER) as cache:
        assert store.calls == ["iter_vectors"]
        hit = cache.get("question number 7 ")
        assert hit is not None and hit.response == "answer 7"
    select_list = ITER_VECTORS_SQL.split("FROM")[0].split()
    assert select_list == ["SELECT", "id,", "namespace,", "embedding"]
