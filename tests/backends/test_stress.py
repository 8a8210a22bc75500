"""Many processes and threads on one store, then check the store at rest.

8 spawned processes, each with one cache shared by 3 threads, run a random mix of
gets, puts and deletes for a fixed time against one SQLite file or one Postgres
schema (BYTEA path, and pgvector path), with one psycopg_pool pool per process. Keys
are designed so the end state is computable from what the workers report:

* namespace "owned": every key belongs to one thread, which puts and deletes it, so
  the last successful operation on each key is known;
* namespace "shared": keys every process puts, never deleted;
* namespaces "q0", "q1": puts only, kept under a quota of 30 by LRU eviction.

At rest: no worker error or wrong answer, the owned namespace is exactly the model,
every shared key is present, quotas hold, counters add up to the gets performed, and
no (namespace, query_hash) appears twice.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from _workers import StoreSpec, make_store, stress_process
from mneme import SemanticCache, Store
from mneme.testing import HashingEmbedder

pytestmark = pytest.mark.slow

PROCESSES = 8
THREADS = 3
SECONDS = 8.0
QUOTAS = {"q0": 30, "q1": 30}
DUPLICATES = (
    "SELECT namespace, query_hash, count(*) FROM {entries} "
    "GROUP BY namespace, query_hash HAVING count(*) > 1"
)


def run_workers(spec: StoreSpec) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES, timeout=120)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=stress_process, args=(spec, p, THREADS, SECONDS, QUOTAS, barrier, results)
        )
        for p in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    try:
        reports = [results.get(timeout=SECONDS + 180) for _ in procs]
    finally:
        for p in procs:
            p.join(60)
            if p.exitcode is None:
                p.kill()
                p.join()
        results.close()
        results.join_thread()
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    return reports


def check_at_rest(
    spec: StoreSpec, reports: list[dict[str, Any]], duplicates: list[Any], label: str
) -> None:
    threads = [t for r in reports for t in r["threads"]]
    errors = [e for r in reports for e in r["errors"]] + [e for t in threads for e in t["errors"]]
    assert errors == []
    assert len(threads) == PROCESSES * THREADS
    assert [m for t in threads for m in t["mismatches"]] == []
    owned = {k: v for t in threads for k, v in t["owned"].items()}
    shared = {k for t in threads for k in t["shared"]}
    ops = {name: sum(t["ops"][name] for t in threads) for name in threads[0]["ops"]}
    total_ops = sum(ops.values())
    print(
        f"\nstress {label}: {PROCESSES} processes x {THREADS} threads, {total_ops} operations "
        f"in {SECONDS:.0f} s ({total_ops / SECONDS:.0f}/s): {ops}"
    )
    assert ops["get"] > 0 and ops["delete"] > 0 and ops["put_quota"] > 0

    fp = HashingEmbedder(dim=32)
    store = make_store(("postgres", spec[1], spec[2]) if spec[0] == "postgres-pool" else spec)
    # (the BYTEA view of a pgvector schema is the same entries table)
    store.open(fp.fingerprint, fp.dim)
    try:
        rows = {(e.namespace, e.query): e.response for e in store.iter_all()}
        assert {q: r for (ns, q), r in rows.items() if ns == "owned"} == owned
        shared_rows = {q: r for (ns, q), r in rows.items() if ns == "shared"}
        assert set(shared_rows) == shared
        assert all(r.startswith(f"{q} from p") for q, r in shared_rows.items())
        per_ns = {ns: store.count(ns) for ns in QUOTAS}
        print(f"stress {label}: at rest {store.count()} entries, quota namespaces {per_ns}")
        for ns, quota in QUOTAS.items():
            assert 0 < per_ns[ns] <= quota
        assert store.count() == len(owned) + len(shared) + sum(per_ns.values())
        assert set(store.list_namespaces()) == {"owned", "shared", *QUOTAS}
        counters = store.read_counters()
        assert counters["hits_exact"] + counters["hits_semantic"] + counters["misses"] == ops["get"]
        assert counters["evictions"] > 0
        assert store.integrity_check() is True
    finally:
        store.close()
    assert duplicates == []


def prepare(spec: StoreSpec) -> None:
    """Provision the store once, before the workers start."""
    SemanticCache(store=make_store(spec), embedder=HashingEmbedder(dim=32)).close()


def test_stress_sqlite(tmp_path: Path) -> None:
    path = str(tmp_path / "stress.db")
    spec: StoreSpec = ("sqlite", path)
    prepare(spec)
    started = time.monotonic()
    reports = run_workers(spec)
    with sqlite3.connect(path) as conn:
        duplicates = conn.execute(DUPLICATES.format(entries="entries")).fetchall()
    conn.close()
    check_at_rest(spec, reports, duplicates, f"sqlite ({time.monotonic() - started:.1f} s wall)")


@pytest.mark.backend("postgres")
def test_stress_postgres_bytea(postgres_dsn: str, pg_schema: str) -> None:
    prepare(("postgres", postgres_dsn, pg_schema))
    spec: StoreSpec = ("postgres-pool", postgres_dsn, pg_schema)
    started = time.monotonic()
    reports = run_workers(spec)
    query = sql.SQL(DUPLICATES).format(entries=sql.Identifier(pg_schema, "entries"))
    with psycopg.connect(postgres_dsn) as conn:
        duplicates = conn.execute(query).fetchall()
    label = f"postgres bytea ({time.monotonic() - started:.1f} s wall)"
    check_at_rest(spec, reports, duplicates, label)


@pytest.mark.backend("pgvector")
def test_stress_postgres_pgvector(
    postgres_pgvector_store_factory: Callable[[], Store], postgres_dsn: str, pg_schema: str
) -> None:
    """The same on the pgvector path: Layer 2 runs in the database, no in-process index."""
    prepare(("postgres-pgvector", postgres_dsn, pg_schema))
    spec: StoreSpec = ("postgres-pool", postgres_dsn, pg_schema, "pgvector")
    started = time.monotonic()
    reports = run_workers(spec)
    query = sql.SQL(DUPLICATES).format(entries=sql.Identifier(pg_schema, "entries"))
    with psycopg.connect(postgres_dsn) as conn:
        duplicates = conn.execute(query).fetchall()
    label = f"postgres pgvector ({time.monotonic() - started:.1f} s wall)"
    check_at_rest(spec, reports, duplicates, label)
