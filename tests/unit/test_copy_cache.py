"""copy_cache and ``python -m mneme.tools.migrate copy``: a filled cache, mneme 1.0's
included, copied into another store; the source is only read.

The move to PostgreSQL with pgvector is in tests/backends/test_copy_to_postgres.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from mneme import (
    CheckpointError,
    EmbedderMismatchError,
    MemoryStore,
    Progress,
    SemanticCache,
    SQLiteStore,
)
from mneme.tools.migrate import copy_cache, main
from v1_fixtures import EMBEDDER, EXPECTED, V1
from v1_store import BATCH_METHODS, LegacyDictStore

ALL = len(EXPECTED["entries"])


def served(cache: SemanticCache) -> dict[tuple[str, str], tuple[str, Any]]:
    """What the cache serves for each of the 1.0 fixture's queries (exact layer)."""
    out = {}
    for e in EXPECTED["entries"]:
        if e["ttl"] != 1:  # long expired
            hit = cache.get(e["query"], namespace=e["namespace"])
            assert hit is not None and hit.layer == "exact", e
            out[(e["namespace"], e["query"])] = (hit.response, hit.metadata)
    return out


WANTED = {
    (e["namespace"], e["query"]): (e["response"], e["metadata"] or {})
    for e in EXPECTED["entries"]
    if e["ttl"] != 1
}


@pytest.mark.parametrize("name", ["cache.db", "checkpoint.tar.gz"])
def test_copy_a_1_0_source_into_sqlite(tmp_path: Path, name: str) -> None:
    source = tmp_path / name
    shutil.copyfile(V1 / name, source)
    before = source.read_bytes()
    calls: list[Progress] = []
    target = tmp_path / "target.db"
    n = copy_cache(source, SQLiteStore(str(target)), batch_size=4, progress=calls.append)
    assert n == ALL
    assert calls == [Progress("copy", done, ALL) for done in (0, 4, ALL)]
    assert source.read_bytes() == before
    with SemanticCache(str(target), EMBEDDER) as cache:
        assert served(cache) == WANTED
        stats = cache.stats()  # 1.0's counters came along: 1 exact hit, 1 miss
        assert (stats.hits_exact, stats.misses) == (1 + len(WANTED), 1)
        store = cache._store
        assert isinstance(store, SQLiteStore)
        assert store.get_namespace_quota("tenant_b") == 50


def test_copy_an_open_store_into_a_store_written_for_1_0(tmp_path: Path) -> None:
    with SemanticCache(str(tmp_path / "a.db"), EMBEDDER) as cache:
        cache.put_many([{"query": f"question {i}", "response": f"answer {i}"} for i in range(7)])
        cache.put("scoped", "yes", namespace="other", ttl=600)
    source = SQLiteStore(str(tmp_path / "a.db"))
    source.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    target = LegacyDictStore()
    try:
        assert copy_cache(source, target, batch_size=3) == 8
        assert source.count() == 8  # left open, untouched
    finally:
        source.close()
    assert not any(name in BATCH_METHODS for name in target.calls)
    assert target.calls.count("insert") == 8
    copied = sorted((e.namespace, e.query, e.ttl) for e in target.tables.rows.values())
    assert copied[-1] == ("other", "scoped", 600)
    with SemanticCache(store=LegacyDictStore(target.tables), embedder=EMBEDDER) as again:
        hit = again.get("question 3")
        assert hit is not None and hit.response == "answer 3"


def test_copy_refuses_a_target_of_another_embedder(tmp_path: Path) -> None:
    target = MemoryStore()
    target.open("another-model", EMBEDDER.dim)
    with pytest.raises(EmbedderMismatchError, match="reembed"):
        copy_cache(V1 / "cache.db", target)


def test_copy_of_a_bad_source_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(CheckpointError, match=r"junk\.db"):
        copy_cache(junk, SQLiteStore(str(tmp_path / "t.db")))
    with pytest.raises(CheckpointError, match="cannot read"):
        copy_cache(tmp_path / "missing.db", SQLiteStore(str(tmp_path / "t.db")))
    assert junk.read_bytes() == b"not a database at all" * 100


def test_command_line_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "moved.db"
    assert main(["copy", str(V1 / "checkpoint.tar.gz"), "--to", str(target)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"copied {ALL} entries from {V1 / 'checkpoint.tar.gz'} to {target}"
    assert f"{ALL}/{ALL} entries (100%)" in err
    with SemanticCache(str(target), EMBEDDER) as cache:
        assert served(cache) == WANTED
    assert main(["copy", str(tmp_path / "missing.db"), "--to", str(target), "--quiet"]) == 1
    assert "error: cannot read" in capsys.readouterr().err
