"""The one-command move of a filled mneme 1.0 cache to PostgresStore with pgvector,
on the real server with pgvector, through the command line and the library call."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mneme import Progress, SemanticCache
from mneme.stores.postgres import PostgresStore
from mneme.tools.migrate import copy_cache, main
from v1_fixtures import EMBEDDER, EXPECTED, V1, a_minute_after_writing

pytestmark = pytest.mark.backend("pgvector")

LIVE = [e for e in EXPECTED["entries"] if e["ttl"] != 1]  # one expired long ago


def check_moved(dsn: str, schema: str) -> None:
    store = PostgresStore(dsn, schema=schema, use_pgvector=True)
    with SemanticCache(
        store=store, embedder=EMBEDDER, similarity_threshold=0.75, clock=a_minute_after_writing
    ) as cache:
        assert cache.health().index_backend == "pgvector"  # Layer 2 runs in Postgres
        for e in LIVE:
            hit = cache.get(e["query"], namespace=e["namespace"])
            assert hit is not None and hit.layer == "exact", e
            assert (hit.response, hit.metadata) == (e["response"], e["metadata"] or {})
        hit = cache.get("what is the capital city of France", namespace="tenant_b")
        assert hit is not None and hit.layer == "semantic"
        assert hit.response == "Paris, for tenant b."
        stats = cache.stats()
        assert stats.entries == len(EXPECTED["entries"])  # the expired one goes at vacuum
        assert (stats.hits_exact, stats.hits_semantic) == (1 + len(LIVE), 1)
        assert stats.misses == 1
        assert store.get_namespace_quota("tenant_b") == 50
        assert cache.vacuum() == 1


def test_one_command_moves_a_1_0_cache_file_to_pgvector(
    tmp_path: Path, postgres_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "cache.db"
    shutil.copyfile(V1 / "cache.db", source)
    before = source.read_bytes()
    argv = ["copy", str(source), "--to", postgres_dsn, "--schema", pg_schema, "--pgvector"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"copied {len(EXPECTED['entries'])} entries from {source} to ")
    assert f"(schema {pg_schema}, pgvector)" in out
    assert source.read_bytes() == before
    check_moved(postgres_dsn, pg_schema)


def test_copy_cache_streams_a_1_0_checkpoint_into_pgvector(
    postgres_dsn: str, pg_schema: str
) -> None:
    seen: list[Progress] = []
    target = PostgresStore(postgres_dsn, schema=pg_schema, use_pgvector=True)
    n = copy_cache(V1 / "checkpoint.tar.gz", target, batch_size=2, progress=seen.append)
    assert n == len(EXPECTED["entries"])
    assert seen == [Progress("copy", done, n) for done in (0, 2, 4, 6)]
    check_moved(postgres_dsn, pg_schema)
