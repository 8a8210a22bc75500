"""Worker functions for the multi-process tests, importable by spawned children.

Children are started with the "spawn" method, so they import mneme afresh and share
nothing with the test process but the backing store. Everything here is picklable:
store specs are plain tuples, results are plain dicts and lists.
"""

from __future__ import annotations

import random
import resource
import signal
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from mneme import MnemeError, SemanticCache, SQLiteStore, StoreBackendError
from mneme.stores.protocol import BatchStore
from mneme.testing import HashingEmbedder

StoreSpec = tuple[str, ...]
"""("sqlite", path), ("postgres", dsn, schema), ("postgres-pgvector", dsn, schema), or
("postgres-pool", dsn, schema[, "pgvector"]) for a pooled store."""

DIM = 16


def embedder() -> HashingEmbedder:
    return HashingEmbedder(dim=DIM)


def basis(i: int) -> list[float]:
    """The i-th unit vector of the test dimension: distinct ones have cosine 0."""
    v = [0.0] * DIM
    v[i % DIM] = 1.0
    return v


def make_store(spec: StoreSpec, *, sqlite_timeout: float = 5.0) -> BatchStore:
    kind = spec[0]
    if kind == "sqlite":
        return SQLiteStore(spec[1], timeout=sqlite_timeout)
    from mneme.stores.postgres.store import PostgresStore

    if kind == "postgres":
        return PostgresStore(spec[1], schema=spec[2], connect_timeout=5)
    if kind == "postgres-pgvector":
        return PostgresStore(spec[1], schema=spec[2], connect_timeout=5, use_pgvector=True)
    raise ValueError(f"unknown store spec {spec!r}")


def make_pooled_store(spec: StoreSpec, size: int) -> tuple[BatchStore, Callable[[], None]]:
    """A store for ``spec``; for ("postgres-pool", dsn, schema) one psycopg_pool pool
    of ``size`` connections is made for it. Returns the store and what closes the pool."""
    if spec[0] != "postgres-pool":
        return make_store(spec, sqlite_timeout=60.0), lambda: None
    from psycopg_pool import ConnectionPool

    from mneme.stores.postgres.store import PostgresStore

    pool: ConnectionPool[Any] = ConnectionPool(
        spec[1], min_size=1, max_size=size, open=True, timeout=60
    )
    pgvector = spec[3:] == ("pgvector",)
    return PostgresStore(pool=pool, schema=spec[2], use_pgvector=pgvector), pool.close


# -- a cache driven by commands over a pipe -------------------------------------------


def cache_server(conn: Any, spec: StoreSpec, kwargs: dict[str, Any]) -> None:
    """Open a cache on ``spec`` and run the commands received on ``conn`` until
    ("close",): ("put", query, response, embedding, namespace) / ("delete", query,
    namespace) / ("get", query, embedding, namespace) / ("clock", t). Each command is
    answered with ("ok", result) or ("error", repr)."""
    now = [float(kwargs.pop("clock_start", time.time()))]
    cache = SemanticCache(
        store=make_store(spec), embedder=embedder(), clock=lambda: now[0], **kwargs
    )
    try:
        conn.send(("ok", "ready"))
        while True:
            command, *args = conn.recv()
            if command == "close":
                break
            try:
                result: Any = None
                if command == "put":
                    query, response, emb, ns = args
                    cache.put(query, response, embedding=emb, namespace=ns)
                elif command == "delete":
                    result = cache.delete(args[0], namespace=args[1])
                elif command == "get":
                    hit = cache.get(args[0], embedding=args[1], namespace=args[2])
                    result = None if hit is None else (hit.layer, hit.response)
                elif command == "clock":
                    now[0] = float(args[0])
                else:
                    raise ValueError(f"unknown command {command!r}")
                conn.send(("ok", result))
            except Exception as exc:
                conn.send(("error", repr(exc)))
    finally:
        cache.close()
        conn.send(("ok", "closed"))
        conn.close()


# -- the mixed stress workload --------------------------------------------------------


def _thread_workload(
    cache: SemanticCache,
    proc: int,
    thread: int,
    deadline: float,
    quota_namespaces: list[str],
    out: dict[str, Any],
) -> None:
    """Random gets, puts and deletes until ``deadline``. Keys in namespace "owned"
    belong to this thread alone (put and delete), so their final state is known here;
    keys in "shared" are only ever put (by everyone); the quota namespaces only take
    puts and are kept small by eviction."""
    rng = random.Random(proc * 1000 + thread)
    prefix = f"p{proc}-t{thread}"
    model: dict[str, str] = {}  # owned key -> response last put (absent: deleted)
    shared: set[str] = set()
    ops = {"get": 0, "put": 0, "delete": 0, "put_shared": 0, "put_quota": 0}
    mismatches: list[str] = []
    errors: list[str] = []
    version = 0
    while time.monotonic() < deadline:
        roll = rng.random()
        try:
            if roll < 0.40:
                if rng.random() < 0.5:
                    key = f"{prefix} owned key {rng.randrange(20)}"
                    hit = cache.get(key, namespace="owned")
                    expected = model.get(key)
                    if expected is not None and (hit is None or hit.response != expected):
                        mismatches.append(f"get {key!r}: expected {expected!r}, got {hit!r}")
                else:
                    cache.get(f"shared key {rng.randrange(50)}", namespace="shared")
                ops["get"] += 1
            elif roll < 0.70:
                key = f"{prefix} owned key {rng.randrange(20)}"
                version += 1
                response = f"{key} v{version}"
                cache.put(key, response, namespace="owned")
                model[key] = response
                ops["put"] += 1
            elif roll < 0.80:
                key = f"{prefix} owned key {rng.randrange(20)}"
                deleted = cache.delete(key, namespace="owned")
                if deleted != (key in model):
                    mismatches.append(f"delete {key!r} returned {deleted}, model {key in model}")
                model.pop(key, None)
                ops["delete"] += 1
            elif roll < 0.90:
                key = f"shared key {rng.randrange(50)}"
                cache.put(key, f"{key} from {prefix}", namespace="shared")
                shared.add(key)
                ops["put_shared"] += 1
            else:
                ns = rng.choice(quota_namespaces)
                key = f"quota key {rng.randrange(200)}"
                cache.put(key, f"{key} from {prefix}", namespace=ns)
                ops["put_quota"] += 1
        except Exception as exc:
            errors.append("".join(traceback.format_exception(exc)))
            if len(errors) > 5:
                break
    out.update(
        proc=proc,
        thread=thread,
        owned=model,
        shared=sorted(shared),
        ops=ops,
        mismatches=mismatches,
        errors=errors,
    )


def stress_process(
    spec: StoreSpec,
    proc: int,
    threads: int,
    seconds: float,
    quotas: dict[str, int],
    barrier: Any,
    results: Any,
) -> None:
    """One process of the stress test: one cache shared by ``threads`` threads."""
    outs: list[dict[str, Any]] = [{} for _ in range(threads)]
    errors: list[str] = []
    store, close_pool = make_pooled_store(spec, threads)
    try:
        cache = SemanticCache(
            store=store,
            embedder=HashingEmbedder(dim=32),
            namespace_quotas=quotas,
            multi_process_mode="stale-tolerant",
            stale_check_interval=0.5,
        )
    except Exception as exc:
        close_pool()
        barrier.wait()
        results.put({"proc": proc, "threads": [], "errors": [repr(exc)]})
        return
    try:
        barrier.wait()
        deadline = time.monotonic() + seconds
        workers = [
            threading.Thread(
                target=_thread_workload,
                args=(cache, proc, t, deadline, sorted(quotas), outs[t]),
            )
            for t in range(threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        try:
            cache.close()
        except Exception as exc:
            errors.append(f"close: {exc!r}")
        close_pool()
    results.put({"proc": proc, "threads": outs, "errors": errors})


# -- SQLite under a file size limit ---------------------------------------------------


def _capture(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn``; describe what it raised (or that it returned)."""
    try:
        fn()
    except BaseException as exc:
        cause = exc.__cause__
        return {
            "raised": type(exc).__name__,
            "mneme": isinstance(exc, MnemeError),
            "backend": isinstance(exc, StoreBackendError),
            "message": str(exc),
            "cause": None if cause is None else type(cause).__module__ + "." + type(cause).__name__,
            "traceback": "".join(traceback.format_exception(exc)),
        }
    return {"raised": None}


def sqlite_under_fsize_limit(path: str, limit: int, attempts: int, results: Any) -> None:
    """Open a cache on ``path`` with every file limited to ``limit`` bytes (SIGXFSZ
    ignored, so writes past it fail with EFBIG) and put growing entries until a put
    fails. Reports which puts returned and what the first failure looked like; then
    lifts the limit and closes the cache."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    returned: list[str] = []
    failure: dict[str, Any] = {"raised": None}
    after: dict[str, Any] = {}
    rng = np.random.default_rng(7)
    try:
        cache = SemanticCache(path, embedder())
    except BaseException as exc:
        results.put({"returned": [], "failure": {"raised": "at open: " + repr(exc)}})
        raise
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        for i in range(attempts):
            query = f"fault entry {i}"
            response = f"{i} " + rng.bytes(3000).hex()

            def put(q: str = query, r: str = response) -> None:
                cache.put(q, r, embedding=rng.standard_normal(DIM))

            failure = _capture(put)
            if failure["raised"] is not None:
                break
            returned.append(query)
        # A lookup that hits must also record the access: a write.
        after["get_during_fault"] = _capture(lambda: cache.get(returned[0]))
        after["second_failure"] = _capture(
            lambda: cache.put("one more", "x" * 20_000, embedding=basis(0))
        )
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        after["close"] = _capture(cache.close)
    results.put({"returned": returned, "failure": failure, **after})
