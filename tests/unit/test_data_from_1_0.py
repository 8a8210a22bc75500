"""Data written by mneme 1.0: its SQLite cache files open in place, migrated forward,
and ``loads`` reads its checkpoint archives. Bad input raises a clear error and leaves
the source as it was.

The fixtures in ``tests/fixtures/v1`` were written by the real mneme 1.0.1 (see
``make_fixtures.py`` there); ``expected.json`` says what they hold.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

import pytest

from cache_helpers import run
from mneme import (
    AsyncSemanticCache,
    CheckpointError,
    EmbedderDimensionError,
    EmbedderMismatchError,
    SchemaMigrationError,
    SemanticCache,
    SQLiteStore,
    to_async_embedder,
)
from mneme.testing import HashingEmbedder
from v1_fixtures import EMBEDDER, EXPECTED, V1, a_minute_after_writing

THRESHOLD = 0.75  # a paraphrase scores 0.79 at this small dim, an unrelated question 0.42


class OtherModel:
    """Same dim as the fixtures' embedder, another fingerprint."""

    dim = EXPECTED["embedder_dim"]
    fingerprint = "another-model-v3"

    def embed(self, text: str) -> Any:
        return EMBEDDER.embed(text)


def copy_of(name: str, tmp_path: Path, as_name: str | None = None) -> Path:
    dest = tmp_path / (as_name or name)
    shutil.copyfile(V1 / name, dest)
    return dest


def check_holds_the_1_0_data(cache: SemanticCache) -> None:
    """Every entry 1.0 wrote is served with its response and metadata ({} for none),
    and 1.0's counters and quotas carried over."""
    for e in EXPECTED["entries"]:
        if e["ttl"] == 1:
            continue  # expired long ago
        hit = cache.get(e["query"], namespace=e["namespace"])
        assert hit is not None, e
        assert (hit.layer, hit.response, hit.metadata) == (
            "exact",
            e["response"],
            e["metadata"] or {},
        )
    assert cache.get("What expires at once?") is None  # expired: deleted on sight
    hit = cache.get("what is the capital city of France", namespace="tenant_b")
    assert hit is not None and hit.layer == "semantic"
    assert hit.response == "Paris, for tenant b."
    stats = cache.stats()
    live = len(EXPECTED["entries"]) - 1
    assert stats.entries == live
    # 1.0 counted one exact hit and one miss; this test adds five exact hits, one miss
    # (the expired entry) and one semantic hit.
    assert (stats.hits_exact, stats.hits_semantic) == (EXPECTED["stats"]["hits_exact"] + 5, 1)
    assert stats.misses == EXPECTED["stats"]["misses"] + 1
    assert stats.expirations == 1
    store = cache._store
    assert isinstance(store, SQLiteStore)
    assert store.get_namespace_quota("tenant_b") == EXPECTED["quotas"]["tenant_b"]
    assert store.read_meta("counters") is None  # moved into the counters table
    health = cache.health()
    assert health.healthy and health.schema_version == SQLiteStore.schema_version


# -- a 1.0 SQLite cache file ------------------------------------------------------------


def test_a_1_0_cache_file_opens_in_place_migrated_forward(tmp_path: Path) -> None:
    path = copy_of("cache.db", tmp_path)
    with sqlite3.connect(path) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM entries ORDER BY id")]
    conn.close()
    with SemanticCache(
        str(path), EMBEDDER, similarity_threshold=THRESHOLD, clock=a_minute_after_writing
    ) as cache:
        check_holds_the_1_0_data(cache)
        cache.put("A new question after the move?", "yes")
    with sqlite3.connect(path) as conn:
        meta = dict(conn.execute("SELECT key, value FROM schema_meta"))
        kept = [r[0] for r in conn.execute("SELECT id FROM entries ORDER BY id")]
        columns = {r[1]: r[3] for r in conn.execute("PRAGMA table_info(entries)")}
        (version_type,) = conn.execute(
            "SELECT typeof(value) FROM multi_process_state WHERE key = 'version_counter'"
        ).fetchone()
    conn.close()
    assert meta["schema_version"] == str(SQLiteStore.schema_version)
    assert meta["embedder_fingerprint"] == EXPECTED["embedder_fingerprint"]
    # Ids are kept (the expired entry went), and a new one is never an old one.
    assert kept[:-1] == [i for i in ids if i != 4] and kept[-1] > max(ids)
    assert columns["metadata"] == 0 and "changed_version" in columns
    assert version_type == "integer"
    with SemanticCache(str(path), EMBEDDER) as again:  # and it opens again as it is
        hit = again.get("A new question after the move?")
        assert hit is not None and hit.response == "yes"


def _unchanged_after(path: Path, error: type[Exception], match: str, embedder: Any) -> None:
    before = path.read_bytes()
    with pytest.raises(error, match=match):
        SemanticCache(str(path), embedder)
    assert path.read_bytes() == before


def test_a_1_0_file_opened_with_another_embedder_is_refused_untouched(tmp_path: Path) -> None:
    path = copy_of("cache.db", tmp_path)
    _unchanged_after(path, EmbedderMismatchError, "reembed", OtherModel())
    wider = HashingEmbedder(dim=64)
    same_name = type("SameName", (), {"dim": 64, "fingerprint": EMBEDDER.fingerprint})
    same_name.embed = lambda self, text: wider.embed(text)  # type: ignore[attr-defined]
    _unchanged_after(path, EmbedderDimensionError, "reembed", same_name())


def test_a_newer_cache_file_asks_for_an_upgrade_untouched(tmp_path: Path) -> None:
    path = copy_of("cache.db", tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    _unchanged_after(path, SchemaMigrationError, "upgrade mneme", EMBEDDER)


def test_a_1_0_file_that_cannot_be_migrated_says_how_to_import_it(tmp_path: Path) -> None:
    path = copy_of("cache.db", tmp_path)
    with sqlite3.connect(path) as conn:  # damaged: a column 1.0 always had is gone
        conn.execute("ALTER TABLE entries DROP COLUMN access_count")
    conn.close()
    _unchanged_after(path, SchemaMigrationError, "python -m mneme.tools.migrate copy", EMBEDDER)


# -- a 1.0 checkpoint archive -----------------------------------------------------------


@pytest.mark.parametrize("name", ["checkpoint.tar.gz", "checkpoint.jsonl", "no-extension"])
def test_loads_reads_a_1_0_checkpoint_whatever_its_name(tmp_path: Path, name: str) -> None:
    source = copy_of("checkpoint.tar.gz", tmp_path, name)
    before = source.read_bytes()
    dest = tmp_path / "restored.db"
    with SemanticCache.loads(
        str(source),
        str(dest),
        EMBEDDER,
        similarity_threshold=THRESHOLD,
        clock=a_minute_after_writing,
    ) as cache:
        check_holds_the_1_0_data(cache)
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "restored.db"])


def test_a_dump_named_like_an_archive_is_still_a_dump(tmp_path: Path) -> None:
    with SemanticCache(str(tmp_path / "a.db"), EMBEDDER) as cache:
        cache.put("q", "r")
        cache.dumps(str(tmp_path / "dump.tar.gz"))
    with SemanticCache.loads(str(tmp_path / "dump.tar.gz"), str(tmp_path / "b.db"), EMBEDDER) as c:
        hit = c.get("q")
        assert hit is not None and hit.response == "r"


def _rewritten_archive(tmp_path: Path, **manifest_changes: Any) -> Path:
    """The 1.0 checkpoint with its manifest changed (None removes a key)."""
    dest = tmp_path / "changed.tar.gz"
    with tarfile.open(V1 / "checkpoint.tar.gz", "r:gz") as src, tarfile.open(dest, "w:gz") as out:
        for member in src.getmembers():
            data = src.extractfile(member)
            assert data is not None
            body = data.read()
            if member.name == "manifest.json":
                manifest = json.loads(body)
                for key, value in manifest_changes.items():
                    if value is None:
                        manifest.pop(key, None)
                    else:
                        manifest[key] = value
                body = json.dumps(manifest).encode()
                member.size = len(body)
            out.addfile(member, io.BytesIO(body))
    return dest


def _truncated(tmp_path: Path) -> Path:
    data = (V1 / "checkpoint.tar.gz").read_bytes()
    dest = tmp_path / "truncated.tar.gz"
    dest.write_bytes(data[: len(data) // 2])
    return dest


def _not_a_tar(tmp_path: Path) -> Path:
    import gzip

    dest = tmp_path / "plain.gz"
    dest.write_bytes(gzip.compress(b"just some text, not a tar archive"))
    return dest


BAD_ARCHIVES: dict[str, tuple[Any, type[Exception], str]] = {
    "truncated": (_truncated, CheckpointError, "truncated or not a mneme 1.0 checkpoint"),
    "gzip but not tar": (_not_a_tar, CheckpointError, "not a mneme 1.0 checkpoint"),
    "newer format": (
        lambda p: _rewritten_archive(p, format_version=2),
        CheckpointError,
        "newer than this mneme reads.*upgrade",
    ),
    "other fingerprint": (
        lambda p: _rewritten_archive(p, embedder_fingerprint="another-model"),
        EmbedderMismatchError,
        "reembed",
    ),
    "other dim": (
        lambda p: _rewritten_archive(p, embedder_dim=64),
        EmbedderDimensionError,
        "reembed",
    ),
    "no manifest version": (
        lambda p: _rewritten_archive(p, format_version=None),
        CheckpointError,
        "format_version",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARCHIVES.values()), ids=list(BAD_ARCHIVES))
def test_a_bad_archive_is_refused_and_nothing_is_written(
    tmp_path: Path, case: tuple[Any, type[Exception], str]
) -> None:
    make, error, match = case
    source: Path = make(tmp_path)
    before = source.read_bytes()
    dest = tmp_path / "out" / "restored.db"
    dest.parent.mkdir()
    with pytest.raises(error, match=match):
        SemanticCache.loads(str(source), str(dest), EMBEDDER)
    assert source.read_bytes() == before
    assert list(dest.parent.iterdir()) == []


def test_an_unwritable_destination_is_named_as_such(tmp_path: Path) -> None:
    dest = tmp_path / "no-such-dir" / "restored.db"
    with pytest.raises(CheckpointError, match="cannot write the restored cache"):
        SemanticCache.loads(str(V1 / "checkpoint.tar.gz"), str(dest), EMBEDDER)


@pytest.mark.parametrize("kind", ["dump", "archive"])
def test_a_missing_source_raises_checkpoint_error(tmp_path: Path, kind: str) -> None:
    with pytest.raises(CheckpointError, match="cannot read"):
        SemanticCache.loads(str(tmp_path / f"missing.{kind}"), str(tmp_path / "c.db"), EMBEDDER)
    assert not (tmp_path / "c.db").exists()


def test_a_1_0_checkpoint_is_not_loaded_over_an_existing_cache(tmp_path: Path) -> None:
    with SemanticCache(str(tmp_path / "busy.db"), EMBEDDER) as cache:
        cache.put("mine", "keep me")
    before = (tmp_path / "busy.db").read_bytes()
    with pytest.raises(CheckpointError, match="already exists"):
        SemanticCache.loads(str(V1 / "checkpoint.tar.gz"), str(tmp_path / "busy.db"), EMBEDDER)
    assert (tmp_path / "busy.db").read_bytes() == before


# -- the async cache --------------------------------------------------------------------


def test_async_loads_reads_a_1_0_checkpoint(tmp_path: Path) -> None:
    async def main() -> None:
        source = str(V1 / "checkpoint.tar.gz")
        dest = str(tmp_path / "restored.db")
        cache = await AsyncSemanticCache.loads(source, dest, to_async_embedder(EMBEDDER))
        async with cache:
            hit = await cache.get("What is the capital of France?")
            assert hit is not None and hit.response == "Paris."
            stats = await cache.stats()
            assert (stats.entries, stats.misses) == (len(EXPECTED["entries"]), 1)
        with pytest.raises(EmbedderMismatchError):
            await AsyncSemanticCache.loads(
                source, str(tmp_path / "other.db"), to_async_embedder(OtherModel())
            )

    run(main())


def test_async_dumps_and_loads_round_trip(tmp_path: Path) -> None:
    emb = to_async_embedder(EMBEDDER)

    async def main() -> None:
        async with AsyncSemanticCache(
            str(tmp_path / "a.db"), emb, similarity_threshold=THRESHOLD
        ) as cache:
            await cache.put("What is the capital of France?", "Paris.", metadata={"k": 1})
            await cache.put("Who wrote War and Peace?", "Tolstoy.", namespace="books", ttl=99)
            assert await cache.dumps(str(tmp_path / "dump.jsonl")) == 2
        loaded = await AsyncSemanticCache.loads(
            str(tmp_path / "dump.jsonl"),
            str(tmp_path / "b.db"),
            emb,
            similarity_threshold=THRESHOLD,
        )
        async with loaded:
            hit = await loaded.get("what is the capital city of france")
            assert hit is not None and (hit.layer, hit.metadata) == ("semantic", {"k": 1})
            assert (await loaded.stats(namespace="books")).entries == 1
        with pytest.raises(CheckpointError):
            await AsyncSemanticCache.loads(
                str(tmp_path / "missing.jsonl"), str(tmp_path / "c.db"), emb
            )

    run(main())
