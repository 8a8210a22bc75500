"""Progress callbacks of the cache's long operations: put_many, dumps, load."""

from __future__ import annotations

from pathlib import Path

import pytest

from mneme import Progress, SemanticCache
from mneme.testing import HashingEmbedder

EMBEDDER = HashingEmbedder(dim=32)


def _items(n: int) -> list[dict[str, str]]:
    return [{"query": f"question number {i}", "response": f"answer {i}"} for i in range(n)]


def _by_task(events: list[Progress], task: str) -> list[tuple[int, int | None]]:
    return [(e.done, e.total) for e in events if e.task == task]


def test_put_many_reports_embedding_per_chunk_then_the_write(tmp_path: Path) -> None:
    events: list[Progress] = []
    with SemanticCache(str(tmp_path / "c.db"), EMBEDDER) as cache:
        cache.put_many(_items(2500), progress=events.append)
        assert cache.stats().entries == 2500
    assert _by_task(events, "embed") == [(0, 2500), (1024, 2500), (2048, 2500), (2500, 2500)]
    assert _by_task(events, "write") == [(0, 2500), (2500, 2500)]
    assert [e.task for e in events].index("write") > [e.task for e in events].index("embed")


def test_put_many_counts_only_texts_it_embeds(tmp_path: Path) -> None:
    events: list[Progress] = []
    given: dict[str, object] = {"query": "given", "response": "r", "embedding": EMBEDDER.embed("x")}
    items: list[dict[str, object]] = [{**item} for item in _items(3)]
    items.append(given)
    with SemanticCache(str(tmp_path / "c.db"), EMBEDDER) as cache:
        cache.put_many(items, progress=events.append)
    assert _by_task(events, "embed") == [(0, 3), (3, 3)]
    assert _by_task(events, "write") == [(0, 4), (4, 4)]


def test_dumps_and_load_report_every_batch(tmp_path: Path) -> None:
    dump = str(tmp_path / "dump.jsonl")
    exported: list[Progress] = []
    with SemanticCache(str(tmp_path / "a.db"), EMBEDDER) as cache:
        cache.put_many(_items(2100))
        assert cache.dumps(dump, progress=exported.append) == 2100
    assert _by_task(exported, "export") == [(0, 2100), (1000, 2100), (2000, 2100), (2100, 2100)]

    imported: list[Progress] = []
    with SemanticCache(str(tmp_path / "b.db"), EMBEDDER) as cache:
        assert cache.load(dump, progress=imported.append) == 2100
        assert cache.stats().entries == 2100
        hit = cache.get("question number 7")
        assert hit is not None and hit.response == "answer 7"
        # Loading again replaces, never duplicates: a stopped load is finished by a rerun.
        assert cache.load(dump) == 2100
        assert cache.stats().entries == 2100
    assert _by_task(imported, "import") == [(0, 2100), (1000, 2100), (2000, 2100), (2100, 2100)]


def test_load_refuses_another_embedders_dump(tmp_path: Path) -> None:
    from mneme import EmbedderMismatchError

    dump = str(tmp_path / "dump.jsonl")
    with SemanticCache(str(tmp_path / "a.db"), EMBEDDER) as cache:
        cache.put("q", "r")
        cache.dumps(dump)
    with SemanticCache(str(tmp_path / "b.db"), HashingEmbedder(dim=16)) as other:
        with pytest.raises(EmbedderMismatchError, match="reembed"):
            other.load(dump)
        assert other.stats().entries == 0
