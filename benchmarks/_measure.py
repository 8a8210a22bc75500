"""Timing, memory and size measurements, and the child process that measures a cold open.

Run as a script, this module is the child: it opens a ``SemanticCache`` over the store
described by a JSON spec (argv[1]) ``opens`` times, and prints JSON with the time of
each open and the process RSS before and after the first one. A fresh process per case
keeps the RSS figure free of whatever the parent has allocated.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

SCRIPT = Path(__file__).resolve()


def summary(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p90, p99 and max in milliseconds, with the sample count."""
    a = np.asarray(seconds, dtype=np.float64) * 1e3
    if not len(a):
        return {"count": 0}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "count": len(a),
        "p50": round(float(p50), 4),
        "p90": round(float(p90), 4),
        "p99": round(float(p99), 4),
        "max": round(float(a.max()), 4),
    }


def share(got: Sequence[Any], want: Sequence[Any]) -> float | None:
    """Fraction of positions where ``got`` equals ``want`` (recall@1); None if empty."""
    if not want:
        return None
    return round(sum(g == w for g, w in zip(got, want, strict=True)) / len(want), 4)


def time_calls(
    fn: Callable[[Any], Any], args: Sequence[Any], warmup: int
) -> tuple[list[float], list[Any]]:
    """Call ``fn`` on every arg (the first ``warmup`` untimed); per-call seconds and results."""
    for a in args[:warmup]:
        fn(a)
    times: list[float] = []
    results: list[Any] = []
    for a in args[warmup:]:
        started = time.perf_counter()
        r = fn(a)
        times.append(time.perf_counter() - started)
        results.append(r)
    return times, results


def concurrent_throughput(
    fn: Callable[[Any], Any], args: Sequence[Any], clients: int, seconds: float
) -> dict[str, Any]:
    """``clients`` threads call ``fn`` over ``args`` (each from its own offset, cycling)
    for ``seconds``; total ops/s and per-call latency summary."""
    stop = threading.Event()
    start_gate = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def worker(c: int) -> None:
        mine = latencies[c]
        k = c * 7919
        start_gate.wait()
        try:
            while not stop.is_set():
                started = time.perf_counter()
                fn(args[k % len(args)])
                mine.append(time.perf_counter() - started)
                k += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    flat = [x for per in latencies for x in per]
    return {"clients": clients, "ops_per_s": round(len(flat) / elapsed, 1), **summary(flat)}


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    out: list[float] = []
    started = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - started)


def child_open(spec: dict[str, Any], timeout: float = 3_600.0) -> dict[str, Any]:
    """Run this module in a fresh interpreter to time cold opens and measure RSS."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"open child failed: {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def pg_option(name: str) -> Any:
    """The default of a ``PostgresStore`` constructor option; KeyError when the store
    has no such option (the suite runs against older and newer stores)."""
    import inspect

    from mneme.stores.postgres.store import PostgresStore

    return inspect.signature(PostgresStore).parameters[name].default


def make_store(spec: dict[str, Any], pool: Any = None) -> Any:
    """The store a spec describes: {"kind": "sqlite"|"bytea"|"pgvector", ...}. Options
    the installed ``PostgresStore`` does not take are left out."""
    kind = spec["kind"]
    if kind == "sqlite":
        from mneme.stores.sqlite import SQLiteStore

        return SQLiteStore(spec["path"])
    import inspect

    from mneme.stores.postgres.store import PostgresStore

    known = inspect.signature(PostgresStore).parameters
    options: dict[str, Any] = {k: v for k, v in spec.get("options", {}).items() if k in known}
    if kind == "pgvector":
        options["use_pgvector"] = True
    if pool is not None:
        return PostgresStore(pool=pool, schema=spec["schema"], **options)
    return PostgresStore(spec["dsn"], schema=spec["schema"], **options)


def cache_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    from mneme.testing import HashingEmbedder

    # Explicit embeddings everywhere: the embedder only supplies dim and fingerprint.
    return {"embedder": HashingEmbedder(int(spec["dim"])), "index_backend": "numpy"}


def _child_main(spec: dict[str, Any]) -> None:
    import psutil

    # Import everything the open needs before the first RSS reading.
    import mneme.stores.postgres.store
    import mneme.stores.sqlite  # noqa: F401
    from mneme import SemanticCache

    if spec["kind"] != "sqlite":
        import psycopg  # noqa: F401

    kwargs = cache_kwargs(spec)
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    opens: list[float] = []
    rss_after = 0
    for n in range(int(spec.get("opens", 5))):
        store = make_store(spec)
        started = time.perf_counter()
        cache = SemanticCache(store=store, **kwargs)
        opens.append(time.perf_counter() - started)
        if n == 0:
            gc.collect()
            rss_after = process.memory_info().rss
        cache.close()
        del cache, store
        gc.collect()
    print(json.dumps({"open_s": opens, "rss_before": rss_before, "rss_after": rss_after}))


if __name__ == "__main__":
    _child_main(json.loads(sys.argv[1]))
