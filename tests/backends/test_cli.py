"""The ``mneme`` command, run as its console script against a real SQLite file and a
real Postgres server (pgvector, and stock PostgreSQL 15)."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from cli_helpers import EMBEDDER, fill_postgres, fill_sqlite, mneme, popen
from mneme import SemanticCache
from mneme.stores.postgres.store import PostgresStore
from mneme.stores.postgres.vector import HnswOptions

pytestmark = pytest.mark.backend("postgres")


@pytest.fixture
def sqlite_cache(tmp_path: Path) -> str:
    path = str(tmp_path / "cache.db")
    fill_sqlite(path)
    return path


@pytest.fixture
def pg_cache(postgres_dsn: str, pg_schema: str) -> list[str]:
    """Target arguments of a filled Postgres schema (no pgvector yet)."""
    fill_postgres(postgres_dsn, pg_schema)
    return [postgres_dsn, "--schema", pg_schema]


@pytest.fixture
def other_schema(postgres_dsn: str) -> Iterator[str]:
    name = f"mneme_t_{uuid.uuid4().hex}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _scalar(dsn: str, query: str, schema: str) -> object:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql.SQL(query).format(s=sql.Identifier(schema))).fetchone()
    assert row is not None
    return row[0]


def _hnsw_valid(dsn: str, schema: str) -> bool:
    """The upgrade finished: recorded in schema_meta, and no graph left invalid."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        done = conn.execute(
            sql.SQL("SELECT value FROM {}.schema_meta WHERE key = 'vector_layout'").format(
                sql.Identifier(schema)
            )
        ).fetchone()
        invalid = conn.execute(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname LIKE 'idx_ev_hnsw_%%' AND NOT i.indisvalid",
            [schema],
        ).fetchone()
    return done == ("graphs",) and invalid == (0,)


# -- stats and namespaces ----------------------------------------------------------------


def _check_stats_json(out: str) -> None:
    doc = json.loads(out)
    rows = {r["namespace"]: r for r in doc["namespaces"]}
    assert rows["default"]["entries"] == 30
    assert rows["default"]["hits_exact"] == 1
    assert rows["default"]["hits_semantic"] == 1
    assert rows["default"]["misses"] == 1
    assert rows["greetings"]["entries"] == 1
    assert doc["total"]["entries"] == 31
    assert doc["embedder"] == {"fingerprint": EMBEDDER.fingerprint, "dim": 64}


def test_stats_and_namespaces_on_sqlite(sqlite_cache: str) -> None:
    table = mneme("stats", sqlite_cache)
    assert table.returncode == 0, table.stderr
    assert f"SQLite {sqlite_cache}" in table.stdout
    lines = table.stdout.splitlines()
    assert lines[-3].split() == ["default", "30", "1", "1", "1", "0", "0"]
    assert lines[-1].split() == ["(all)", "31", "1", "1", "1", "0", "0"]
    _check_stats_json(mneme("stats", sqlite_cache, "--json").stdout)
    names = json.loads(mneme("namespaces", sqlite_cache, "--json").stdout)
    assert [r["namespace"] for r in names] == ["default", "greetings"]
    plain = mneme("namespaces", sqlite_cache).stdout.splitlines()
    assert plain[0].split()[:2] == ["namespace", "entries"]
    assert plain[2].split() == ["greetings", "1", "0", "0", "0", "0", "0"]


def test_stats_and_namespaces_on_postgres(pg_cache: list[str]) -> None:
    table = mneme("stats", *pg_cache)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[-1].split() == ["(all)", "31", "1", "1", "1", "0", "0"]
    _check_stats_json(mneme("stats", *pg_cache, "--json").stdout)
    names = json.loads(mneme("namespaces", *pg_cache, "--json").stdout)
    assert [(r["namespace"], r["entries"]) for r in names] == [("default", 30), ("greetings", 1)]


def test_stats_reads_the_target_from_the_environment(pg_cache: list[str]) -> None:
    dsn, _, schema = pg_cache
    result = mneme("stats", "--json", env={"MNEME_TARGET": dsn, "MNEME_SCHEMA": schema})
    assert result.returncode == 0, result.stderr
    _check_stats_json(result.stdout)


def test_stats_on_postgres_15(pg15_dsn: str, pg15_schema: str) -> None:
    fill_postgres(pg15_dsn, pg15_schema)
    result = mneme("stats", pg15_dsn, "--schema", pg15_schema, "--json")
    assert result.returncode == 0, result.stderr
    _check_stats_json(result.stdout)


# -- doctor ---------------------------------------------------------------------------------


def test_doctor_on_a_healthy_sqlite_file(sqlite_cache: str) -> None:
    result = mneme("doctor", sqlite_cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    integrity: PRAGMA quick_check: ok" in result.stdout
    assert result.stdout.rstrip().endswith("0 problems found")


def test_doctor_finds_free_pages_in_sqlite(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    fill_sqlite(path, n=3000)
    with SemanticCache(path, EMBEDDER) as cache:
        cache.clear_namespace("default")
    result = mneme("doctor", path, "--json")
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    found = {f["check"]: f for f in doc["findings"]}
    assert found["free space"]["level"] == "warn"
    assert "VACUUM" in found["free space"]["fix"]


def test_doctor_on_postgres_before_and_after_the_upgrade(pg_cache: list[str]) -> None:
    before = json.loads(mneme("doctor", *pg_cache, "--json").stdout)
    found = {f["check"]: f for f in before["findings"]}
    assert found["server"]["level"] == "ok"
    assert found["pgvector"]["level"] == "ok"
    assert found["layer 2"]["level"] == "info"  # pgvector there, not used by this schema
    assert "mneme upgrade --pgvector" in found["layer 2"]["fix"]
    assert "shared_buffers" not in found  # no graphs, no side table to hold
    assert before["problems"] == 0
    assert mneme("upgrade", "--pgvector", *pg_cache).returncode == 0
    after = mneme("doctor", *pg_cache)
    assert after.returncode == 0, after.stdout
    for line in (
        "ok    side table: all 31 entries have their vector row",
        "ok    vector storage: entry_vectors.embedding is STORAGE MAIN (inline)",
        "ok    entry storage: entries keeps rows in line (toast_tuple_target=8160)",
        "ok    side row storage: entry_vectors keeps rows in line (toast_tuple_target=8160)",
    ):
        assert line in after.stdout
    assert "holds the HNSW graphs and the side table (graphs " in after.stdout


def test_doctor_reports_problems_with_their_fixes(
    pg_cache: list[str], postgres_dsn: str, pg_schema: str
) -> None:
    assert mneme("upgrade", "--pgvector", *pg_cache).returncode == 0
    # Written by a store without pgvector search: no graph is built for them.
    fill_postgres(postgres_dsn, pg_schema, n=4500)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        s = sql.Identifier(pg_schema)
        conn.execute(
            sql.SQL(
                "ALTER TABLE {}.entry_vectors ALTER COLUMN embedding SET STORAGE EXTENDED"
            ).format(s)
        )
        with pytest.raises(psycopg.Error):  # leaves an invalid index behind
            conn.execute(
                sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY broken ON {}.entries (namespace)").format(
                    s
                )
            )
        for name in ("entries", "entry_vectors"):
            conn.execute(
                sql.SQL("ALTER TABLE {}.{} RESET (toast_tuple_target)").format(
                    s, sql.Identifier(name)
                )
            )
        # Autovacuum would clear the dead rows below before doctor counts them.
        for name in ("entries", "entry_vectors"):
            conn.execute(
                sql.SQL("ALTER TABLE {}.{} SET (autovacuum_enabled = false)").format(
                    s, sql.Identifier(name)
                )
            )
        conn.execute(sql.SQL("DELETE FROM {}.entries WHERE id % 3 <> 0").format(s))
        # The dead rows reach the statistics doctor reads before this statement returns
        # (else when the backend next idles or exits, which can be after doctor ran).
        conn.execute("SELECT pg_stat_force_next_flush()")
    # A tiny maintenance_work_mem for this connection only.
    joiner = "&" if "?" in postgres_dsn else "?"
    dsn = f"{postgres_dsn}{joiner}options=-c%20maintenance_work_mem%3D1MB"
    result = mneme("doctor", dsn, "--schema", pg_schema)
    assert result.returncode == 1
    out = result.stdout
    assert f"fail  index: {pg_schema}.broken is invalid" in out
    assert f"fix: REINDEX INDEX CONCURRENTLY {pg_schema}.broken" in out
    threshold = HnswOptions().exact_search_max_rows
    assert f"warn  graphs: 1 namespace(s) above {threshold:,} rows have no vector index" in out
    assert "warn  vector storage: entry_vectors.embedding has attstorage 'x'" in out
    assert "SET STORAGE MAIN" in out
    assert "warn  maintenance_work_mem: 1MB" in out
    assert f"warn  bloat: {pg_schema}.entries:" in out
    assert f"fix: VACUUM (ANALYZE) {pg_schema}.entries" in out
    assert "mneme reindex" in out  # the fix for the side table's dead rows
    assert "info  entry storage: entries has the default TOAST target (2 kB)" in out
    assert (
        "hint: open a store on the schema once as the table's owner, or ALTER TABLE "
        f"{pg_schema}.entries SET (toast_tuple_target = 8160)"
    ) in out
    assert "info  side row storage: entry_vectors has the default TOAST target (2 kB)" in out
    assert f"{pg_schema}.entry_vectors SET (toast_tuple_target = 8160)" in out


def test_doctor_on_postgres_15_without_pgvector(pg15_dsn: str, pg15_schema: str) -> None:
    fill_postgres(pg15_dsn, pg15_schema)
    result = mneme("doctor", pg15_dsn, "--schema", pg15_schema)
    assert result.returncode == 0, result.stdout
    assert "info  pgvector: not available on this server: Layer 2 runs in process" in result.stdout


def test_doctor_on_a_missing_schema(postgres_dsn: str) -> None:
    result = mneme("doctor", postgres_dsn, "--schema", "no_such_schema_here")
    assert result.returncode == 1
    assert "fail  schema: schema 'no_such_schema_here' holds no mneme cache" in result.stdout


# -- upgrade and reindex ------------------------------------------------------------------


def test_upgrade_pgvector_then_search_in_the_database(
    pg_cache: list[str], postgres_dsn: str, pg_schema: str
) -> None:
    result = mneme("upgrade", "--pgvector", *pg_cache)
    assert result.returncode == 0, result.stderr
    assert "backfill: 0 / 31 entries" in result.stderr
    assert "backfill: 31 / 31 entries in" in result.stderr
    assert "pgvector side table complete (31 entries)" in result.stdout
    assert _hnsw_valid(postgres_dsn, pg_schema) is True
    assert _scalar(postgres_dsn, "SELECT count(*) FROM {s}.entry_vectors", pg_schema) == 31
    again = mneme("upgrade", "--pgvector", *pg_cache)
    assert again.returncode == 0
    assert "backfill" not in again.stderr  # nothing left to do
    store = PostgresStore(postgres_dsn, schema=pg_schema, use_pgvector=True)
    with SemanticCache(store=store, embedder=EMBEDDER, similarity_threshold=0.8) as cache:
        hit = cache.get("Question 5 about topic 5!")
        assert hit is not None and hit.layer == "semantic" and hit.response == "answer 5"


def test_upgrade_refuses_sqlite_and_wants_pgvector(sqlite_cache: str) -> None:
    result = mneme("upgrade", "--pgvector", sqlite_cache)
    assert result.returncode == 2
    assert "works on a Postgres schema" in result.stderr
    assert mneme("upgrade", sqlite_cache).returncode == 2  # no --pgvector: usage error


def test_upgrade_on_postgres_15_says_pgvector_is_missing(pg15_dsn: str, pg15_schema: str) -> None:
    fill_postgres(pg15_dsn, pg15_schema)
    result = mneme("upgrade", "--pgvector", pg15_dsn, "--schema", pg15_schema)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "pgvector extension is not available" in result.stderr


def test_reindex_and_rebuild_index(pg_cache: list[str], postgres_dsn: str, pg_schema: str) -> None:
    refused = mneme("reindex", *pg_cache)
    assert refused.returncode == 1
    assert "mneme upgrade --pgvector" in refused.stderr
    assert mneme("upgrade", "--pgvector", *pg_cache).returncode == 0
    for name in ("reindex", "rebuild-index"):
        result = mneme(name, *pg_cache)
        assert result.returncode == 0, result.stderr
        assert "namespace indexes built and rebuilt" in result.stdout
        assert "index: 31 / 31 entries in" in result.stderr
        assert _hnsw_valid(postgres_dsn, pg_schema) is True


def test_reindex_refuses_sqlite(sqlite_cache: str) -> None:
    result = mneme("reindex", sqlite_cache)
    assert result.returncode == 2
    assert "works on a Postgres schema" in result.stderr


# -- export and import ----------------------------------------------------------------------


def test_export_import_between_sqlite_and_postgres(
    sqlite_cache: str, tmp_path: Path, postgres_dsn: str, other_schema: str
) -> None:
    dump = str(tmp_path / "dump.jsonl")
    out = mneme("export", sqlite_cache, dump)
    assert out.returncode == 0, out.stderr
    assert "exported 31 entries" in out.stdout
    assert "export: 31 / 31 entries in" in out.stderr
    into_pg = mneme("import", postgres_dsn, dump, "--schema", other_schema)
    assert into_pg.returncode == 0, into_pg.stderr
    assert "imported 31 entries" in into_pg.stdout
    back = str(tmp_path / "back.jsonl")
    assert mneme("export", postgres_dsn, back, "--schema", other_schema).returncode == 0
    copy = str(tmp_path / "copy.db")
    assert mneme("import", copy, back).returncode == 0
    with SemanticCache(copy, EMBEDDER, similarity_threshold=0.8) as cache:
        assert cache.stats().entries == 31
        hit = cache.get("question 7 about topic 7")
        assert hit is not None and hit.response == "answer 7" and hit.layer == "exact"
        greeting = cache.get("hello there", namespace="greetings")
        assert greeting is not None and greeting.response == "hi"


def test_import_refuses_a_dump_of_another_embedder(tmp_path: Path, pg_cache: list[str]) -> None:
    other = str(tmp_path / "other.db")
    from mneme.testing import HashingEmbedder

    with SemanticCache(other, HashingEmbedder(dim=32)) as cache:
        cache.put("q", "r")
        cache.dumps(str(tmp_path / "other.jsonl"))
    result = mneme("import", *pg_cache[:1], str(tmp_path / "other.jsonl"), *pg_cache[1:])
    assert result.returncode == 1
    assert "EmbedderMismatch" in result.stderr or "embedder" in result.stderr
    assert json.loads(mneme("stats", *pg_cache, "--json").stdout)["total"]["entries"] == 31


# -- calibrate and bench ---------------------------------------------------------------------


def test_calibrate(tmp_path: Path) -> None:
    paraphrases = tmp_path / "p.jsonl"
    distractors = tmp_path / "d.jsonl"
    paraphrases.write_text(
        '{"a": "What is the capital of France?", "b": "what is the capital city of France"}\n'
        '{"a": "How many legs does a spider have?", "b": "how many legs has a spider"}\n'
    )
    distractors.write_text('{"a": "What is the capital of France?", "b": "Who wrote Hamlet?"}\n')
    result = mneme("calibrate", str(paraphrases), str(distractors), "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["precision"] == 1.0 and doc["recall"] == 1.0
    assert 0.5 <= doc["threshold"] <= 0.99
    text = mneme("calibrate", str(paraphrases), str(distractors)).stdout
    assert text.startswith(f"similarity_threshold = {doc['threshold']:.2f}")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": "only a"}\n')
    refused = mneme("calibrate", str(bad), str(distractors))
    assert refused.returncode == 2
    assert f"{bad}:1: expected a JSON object with fields a and b" in refused.stderr


def test_bench_on_sqlite_and_on_a_scratch_postgres_schema(postgres_dsn: str) -> None:
    local = mneme("bench", "--entries", "200", "--lookups", "40", "--dim", "64", "--json")
    assert local.returncode == 0, local.stderr
    doc = json.loads(local.stdout)
    ops = {r["operation"]: r for r in doc["results"]}
    assert ops["put_many"]["entries"] == 200
    assert ops["get exact"]["hits"] == 40
    assert ops["get semantic"]["calls"] == 40
    assert doc["store"].startswith("SQLite")
    remote = mneme(
        "bench", postgres_dsn, "--pgvector", "--entries", "200", "--lookups", "40", "--dim", "64"
    )
    assert remote.returncode == 0, remote.stderr
    assert "get exact" in remote.stdout and "40 hits" in remote.stdout
    with psycopg.connect(postgres_dsn) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'mneme_bench_%'"
        ).fetchone()
    assert left == (0,)


# -- bad input -----------------------------------------------------------------------------


def test_a_password_is_never_printed(postgres_dsn: str, tmp_path: Path) -> None:
    secret = "Sup3r-secret-pw"
    unreachable = f"postgresql://mneme:{secret}@127.0.0.1:1/app"
    for args in (
        ["stats", unreachable],
        ["namespaces", unreachable],
        ["doctor", unreachable],
        ["upgrade", "--pgvector", unreachable],
        ["reindex", unreachable],
        ["export", unreachable, str(tmp_path / "x.jsonl")],
        ["bench", unreachable],
        ["stats", f"host=127.0.0.1 port=1 user=mneme password={secret} dbname=app"],
        ["stats", f"postgresql://mneme:{secret}@127.0.0.1/x?nosuchoption=1"],
        ["stats", f"host=127.0.0.1 password='{secret}"],
    ):
        result = mneme(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert secret not in result.stdout + result.stderr
        if args[0] != "doctor":
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert result.stderr.startswith("mneme: error: ")
        assert "***" in result.stdout + result.stderr


def test_bad_targets_give_one_line_and_exit_code_2(tmp_path: Path, postgres_dsn: str) -> None:
    not_cache = tmp_path / "plain.db"
    import sqlite3

    with sqlite3.connect(not_cache) as conn:
        conn.execute("CREATE TABLE t (x)")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    cases = {
        str(tmp_path / "missing.db"): "holds no mneme cache",
        str(not_cache): "is a SQLite database but no mneme cache",
        str(tmp_path / "junk.db"): "is not a readable SQLite cache",
        str(tmp_path): "is a directory",
    }
    for target, message in cases.items():
        result = mneme("stats", target)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    schema = mneme("stats", postgres_dsn, "--schema", "bad-name!")
    assert schema.returncode == 2
    assert "is not a valid schema name" in schema.stderr
    assert not (tmp_path / "missing.db").exists()  # a read never creates a file


# -- Ctrl-C ------------------------------------------------------------------------------


def _wait_for(proc: object, text: str, timeout: float = 180) -> list[str]:
    import subprocess

    assert isinstance(proc, subprocess.Popen)
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"never saw {text!r}: {seen}")


def _consistent(dsn: str, schema: str, entries: int | None = None) -> int:
    """The schema opens, passes its integrity check, and every entry has its vector
    row; returns how many entries it holds."""
    store = PostgresStore(dsn, schema=schema)
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    try:
        assert store.integrity_check()
        count = store.count()
    finally:
        store.close()
    side = _scalar(dsn, "SELECT count(*) FROM {s}.entry_vectors", schema)
    assert side == count
    if entries is not None:
        assert count == entries
    return count


@pytest.mark.slow
def test_ctrl_c_during_the_upgrade_then_running_it_again_resumes(
    postgres_dsn: str, pg_schema: str
) -> None:
    fill_postgres(postgres_dsn, pg_schema, n=6000)
    # A deliberately slow build (an HNSW graph, at that), so the interrupt lands inside it.
    slow = ["--hnsw-m", "48", "--hnsw-ef-construction", "400", "--ivfflat-max-rows", "0"]
    proc = popen("upgrade", "--pgvector", postgres_dsn, "--schema", pg_schema, *slow)
    _wait_for(proc, "index: 0 / 6,000 entries")  # the one namespace with a graph
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Run the same command again" in err
    assert "Traceback" not in err
    assert not _hnsw_valid(postgres_dsn, pg_schema)
    _consistent(postgres_dsn, pg_schema, entries=6001)
    again = mneme("upgrade", "--pgvector", postgres_dsn, "--schema", pg_schema)
    assert again.returncode == 0, again.stderr
    assert _hnsw_valid(postgres_dsn, pg_schema) is True
    _consistent(postgres_dsn, pg_schema, entries=6001)


@pytest.mark.slow
def test_ctrl_c_during_an_import_leaves_whole_batches_and_a_rerun_finishes(
    postgres_dsn: str, pg_schema: str, other_schema: str, tmp_path: Path
) -> None:
    fill_postgres(postgres_dsn, other_schema, n=8000)
    dump = str(tmp_path / "dump.jsonl")
    assert mneme("export", postgres_dsn, dump, "--schema", other_schema).returncode == 0
    # The target's namespace has its own HNSW graph: each entry costs a graph insertion.
    fill_postgres(postgres_dsn, pg_schema, n=1, use_pgvector=True)
    graphed = PostgresStore(
        postgres_dsn,
        schema=pg_schema,
        use_pgvector=True,
        exact_search_max_rows=0,
        ivfflat_max_rows=0,
    )
    graphed.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    try:
        assert graphed.build_vector_indexes()
    finally:
        graphed.close()
    proc = popen("import", postgres_dsn, dump, "--schema", pg_schema)
    _wait_for(proc, "import: 0 / 8,001 entries")
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    count = _consistent(postgres_dsn, pg_schema)
    assert count < 8001
    again = mneme("import", postgres_dsn, dump, "--schema", pg_schema)
    assert again.returncode == 0, again.stderr
    _consistent(postgres_dsn, pg_schema, entries=8001)
