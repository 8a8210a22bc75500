"""The pgvector store's own measurements: graph builds (with progress), where each
namespace's search runs, recall against ef_search, planning time of the search
statement, a Layer-2 get against its bare-SQL floor, and the same gets taking turns with
an in-process (BYTEA + NumPy) cache on the same rows."""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import _measure as m
import _pg
from _workload import Query, entry_index


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _eta(started: float, done: int, total: int | None) -> str:
    if not total or done <= 0:
        return ""
    elapsed = time.perf_counter() - started
    left = elapsed * (total - done) / done
    return f", {elapsed:.0f} s so far, ETA {left:.0f} s"


class ProgressPrinter:
    """A ``progress`` callback for ``build_vector_indexes``: prints at most every
    ``every`` seconds (and at the end) with an ETA, and keeps every call's time."""

    def __init__(self, label: str, every: float = 10.0) -> None:
        self.label = label
        self.every = every
        self.started = time.perf_counter()
        self.last = -1e9
        self.calls: list[tuple[float, int, int | None]] = []

    def __call__(self, p: Any) -> None:
        now = time.perf_counter()
        if not self.calls:
            self.started = now
        self.calls.append((round(now - self.started, 2), int(p.done), p.total))
        final = p.total is not None and p.done >= p.total
        if now - self.last >= self.every or final:
            self.last = now
            total = "?" if p.total is None else f"{p.total:,}"
            log(
                f"    {self.label}: {p.task} {p.done:,} / {total} {p.unit}"
                f"{_eta(self.started, p.done, p.total)}"
            )


def default_threshold() -> float:
    """SemanticCache's default similarity_threshold, which the benchmark's caches keep."""
    from mneme import SemanticCache

    return float(inspect.signature(SemanticCache).parameters["similarity_threshold"].default)


_GRAPHS = re.compile(r"graphs \d+ / \d+ \((\d+) / (\d+) rows\)")
_COUNT = re.compile(r"(\d+) / (\d+)")


class StoreLog(logging.Handler):
    """The store's log messages (logger "mneme.postgres") with their times: echoed at
    most every ``every`` seconds as progress, and used to split an upgrade into
    backfill and graph builds."""

    def __init__(self, every: float = 10.0) -> None:
        super().__init__(logging.INFO)
        self.events: list[tuple[float, str]] = []
        self.began = time.perf_counter()
        self.every = every
        self.last = -1e9
        self.phase = ("", self.began)  # kind of progress message, when it began

    def emit(self, record: logging.LogRecord) -> None:
        now = time.perf_counter()
        msg = record.getMessage()
        found = _GRAPHS.search(msg) or _COUNT.search(msg)
        extra = ""
        if found:  # "k / K": ETA from the first message of this kind
            kind = re.sub(r"\d+", "#", msg)
            if kind != self.phase[0]:
                self.phase = (kind, self.events[-1][0] if self.events else self.began)
            extra = _eta(self.phase[1], int(found.group(1)), int(found.group(2)))
        self.events.append((now, msg))
        if now - self.last >= self.every or record.levelno >= logging.WARNING:
            self.last = now
            log(f"    store: {msg}{extra}")

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        logger = logging.getLogger("mneme.postgres")
        old_level = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        self.began = time.perf_counter()
        self.phase = ("", self.began)
        try:
            yield
        finally:
            logger.removeHandler(self)
            logger.setLevel(old_level)

    def split(self) -> dict[str, Any]:
        """Seconds before the first graph build started (backfill), and from then to
        the last graph built; how many graphs the log reports built."""
        starts = [t for t, msg in self.events if "building the" in msg]
        ends = [t for t, msg in self.events if " built" in msg]
        out: dict[str, Any] = {
            "graphs_logged": sum(
                "graph of namespace" in msg and " built" in msg for _, msg in self.events
            )
        }
        if starts and ends:
            out["backfill_s"] = round(starts[0] - self.began, 2)
            out["graph_build_s"] = round(ends[-1] - starts[0], 2)
        return out

    def messages(self, limit: int = 12) -> list[str]:
        """The first and last few messages with their second, for the JSON."""
        rows = [f"{t - self.began:.1f}s {msg}" for t, msg in self.events]
        if len(rows) <= limit:
            return rows
        return [*rows[: limit // 2], "...", *rows[-limit // 2 :]]


def build_graphs(store: Any, label: str, wait_s: float = 3_600.0) -> dict[str, Any]:
    """``store.build_vector_indexes()`` timed with progress, then wait until no graph
    is still being built elsewhere (a background build of the store itself)."""
    if not hasattr(store, "build_vector_indexes"):
        return {"available": False, "reason": "the store has no build_vector_indexes()"}
    printer = ProgressPrinter(label)
    kwargs: dict[str, Any] = {}
    if "progress" in inspect.signature(store.build_vector_indexes).parameters:
        kwargs["progress"] = printer
    started = time.perf_counter()
    built = store.build_vector_indexes(**kwargs)
    out: dict[str, Any] = {
        "available": True,
        "seconds": round(time.perf_counter() - started, 2),
        "built": len(built),
        "progress_calls": len(printer.calls),
    }
    deadline = time.perf_counter() + wait_s
    while hasattr(store, "vector_index_status") and time.perf_counter() < deadline:
        states = Counter(g.state for g in store.vector_index_status())
        if not states.get("building") and not states.get("pending"):
            break
        time.sleep(2.0)
    out["seconds_until_settled"] = round(time.perf_counter() - started, 2)
    return out


def fresh_drain(spec: dict[str, Any], wait_s: float = 900.0) -> dict[str, Any]:
    """Rows that single puts left fresh (searched exactly, not yet in their graphs) when
    the puts ended, and the seconds the store's background pass took to move them in.
    Call while the store that wrote them is still open: its pass does the moving."""
    import psycopg
    from psycopg import sql

    query = sql.SQL("SELECT count(*) FROM {}.entry_vectors WHERE fresh").format(
        sql.Identifier(spec["schema"])
    )
    started = time.perf_counter()
    with psycopg.connect(spec["dsn"], autocommit=True) as conn:
        first = left = int(conn.execute(query).fetchone()[0])  # type: ignore[index]
        while left and time.perf_counter() - started < wait_s:
            time.sleep(0.1)
            left = int(conn.execute(query).fetchone()[0])  # type: ignore[index]
    seconds = round(time.perf_counter() - started, 2)
    log(f"  pgvector: {first:,} fresh rows after the puts, {left:,} left after {seconds} s")
    return {"fresh_after_puts": first, "left": left, "seconds_to_move": seconds}


def index_status(store: Any) -> dict[str, Any]:
    """Counts of ``vector_index_status()``: namespaces per state, rows per state."""
    if not hasattr(store, "vector_index_status"):
        return {"available": False}
    graphs = store.vector_index_status()
    states = Counter(g.state for g in graphs)
    rows: Counter[str] = Counter()
    for g in graphs:
        rows[g.state] += g.rows
    return {
        "available": True,
        "namespaces": len(graphs),
        "states": dict(states),
        "rows_by_state": dict(rows),
    }


def ef_sweep(
    spec: dict[str, Any],
    sets: dict[str, list[Query]],
    truth: dict[str, list[int]],
    ef_values: tuple[int, ...],
    per_set: int,
    option: str = "ef_search",
) -> list[dict[str, Any]]:
    """recall@1 and latency of the store's own top-1 search at each value of the store
    ``option`` (ef_search: HNSW graphs; ivfflat_probes: IVFFlat indexes), for each
    query set (paraphrases, topic questions, paraphrases per size class)."""
    import inspect

    from mneme.stores.postgres.store import PostgresStore
    from mneme.testing import HashingEmbedder

    if option not in inspect.signature(PostgresStore).parameters:
        return []
    emb = HashingEmbedder(int(spec["dim"]))
    rows = []
    for ef in ef_values:
        store = m.make_store({**spec, "options": {**spec.get("options", {}), option: ef}})
        store.open(emb.fingerprint, emb.dim)
        try:
            row: dict[str, Any] = {option: ef}
            now = int(time.time())

            def search(q: Query, store: Any = store, now: int = now) -> Any:
                return store.search(q.namespace, q.vector, k=1, now=now)

            for name, qs in sets.items():
                qs = qs[:per_set]
                warm = min(20, len(qs) // 5)
                times, found = m.time_calls(search, qs, warm)
                got = [entry_index(f[0][0].response) if f else None for f in found]
                want = truth[name][warm : len(qs)]
                row[name] = {
                    "recall_at_1": m.share(got, want),
                    "latency_ms": m.summary(times),
                }
            rows.append(row)
        finally:
            store.close()
    return rows


def _open_store(spec: dict[str, Any]) -> Any:
    from mneme.testing import HashingEmbedder

    emb = HashingEmbedder(int(spec["dim"]))
    store = m.make_store(spec)
    store.open(emb.fingerprint, emb.dim)
    return store


def planning(
    spec: dict[str, Any], by_class: dict[str, list[Query]], samples: int, first_calls: int
) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, SUMMARY) of the store's search statement for ``samples``
    queries per size class on one warm connection, and the first statement on
    ``first_calls`` new connections per class (the relation cache is filled per
    connection, so the first plan costs more). Also whether the plan used the namespace's
    own vector index (HNSW or IVFFlat)."""
    store = _open_store(spec)
    try:
        search = _pg.search_sql(store, spec["schema"])
        graphs = _pg.vector_index_names(spec["dsn"], spec["schema"])
        now = int(time.time())
        floor = default_threshold()

        def params(q: Query) -> dict[str, Any]:
            # As a get sends it: entries read only at or above the default threshold.
            return search.params(store, q.namespace, q.vector, 3, now, floor)

        out: dict[str, Any] = {"statement": search.source, "settings": search.settings}
        classes: dict[str, Any] = {}
        with _pg.search_connection(spec["dsn"], search) as conn:
            for cls, qs in by_class.items():
                for q in qs[:3]:  # warm the relation cache and the buffers
                    _pg.explain(conn, search, params(q))
                runs = [_pg.explain(conn, search, params(q)) for q in qs[:samples]]
                classes[cls] = {
                    "planning_ms": m.summary([r["planning_ms"] / 1e3 for r in runs]),
                    "execution_ms": m.summary([r["execution_ms"] / 1e3 for r in runs]),
                    "graph_share": round(
                        sum(any(i in graphs for i in r["indexes"]) for r in runs) / len(runs), 3
                    )
                    if runs
                    else None,
                }
        for cls, qs in by_class.items():
            firsts = []
            for q in qs[:first_calls]:
                with _pg.search_connection(spec["dsn"], search) as conn:
                    firsts.append(_pg.explain(conn, search, params(q))["planning_ms"] / 1e3)
            classes[cls]["first_planning_ms"] = m.summary(firsts)
        out["classes"] = classes
        out["hnsw_indexes"] = sum(method == "hnsw" for method in graphs.values())
        out["ivfflat_indexes"] = sum(method == "ivfflat" for method in graphs.values())
        return out
    finally:
        store.close()


def take_turns(
    calls: dict[str, Callable[[Query], Any]], qs: list[Query], warmup: int
) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    """Each call once per turn, the order rotating turn by turn so drift falls on all
    alike, and each given a different query of ``qs`` in the same turn: a walk right
    after another call's read of the same rows finds them in the CPU's caches and
    looked 20-40% cheaper than it is. Seconds and results of each call, from turn
    ``warmup`` on."""
    order = list(calls)
    shift = max(1, len(qs) // len(order))
    times: dict[str, list[float]] = {name: [] for name in order}
    results: dict[str, list[Any]] = {name: [] for name in order}
    for j in range(len(qs)):
        turn = j % len(order)
        for i, name in enumerate(order[turn:] + order[:turn]):
            q = qs[(j + i * shift) % len(qs)]
            started = time.perf_counter()
            result = calls[name](q)
            took = time.perf_counter() - started
            if j >= warmup:
                times[name].append(took)
                results[name].append(result)
    return times, results


def floor(
    cache: Any, store: Any, spec: dict[str, Any], qs: list[Query], warmup: int
) -> dict[str, Any]:
    """A get that misses Layer 1 and hits Layer 2, against the same search by the store
    alone and the store's own statement for that namespace (its graph's ef_search
    written in, as the store prepares it) run by hand, prepared, on a connection of its
    own (the bare SQL). The three take turns (``take_turns``)."""
    try:
        from mneme._policy import TOP_K as k
    except ImportError:
        k = 3
    search = _pg.search_sql(store, spec["schema"])
    now = int(time.time())
    # The get reads only the entries at or above the cache's threshold; so do the
    # other two, where the store can.
    floor = float(cache.similarity_threshold)
    params = {id(q): search.params(store, q.namespace, q.vector, k, now, floor) for q in qs}
    try:
        store.search(qs[0].namespace, qs[0].vector, k=k, now=now, min_similarity=floor)
        limits: dict[str, Any] = {"min_similarity": floor}
    except TypeError:
        limits = {}
    with _pg.search_connection(spec["dsn"], search) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        bound = {id(q): search.bound(store, conn, params[id(q)]) for q in qs}

        def run_sql(q: Query) -> Any:
            statement, values = bound[id(q)]
            return conn.execute(statement, values, binary=True, prepare=True).fetchall()

        calls: dict[str, Callable[[Query], Any]] = {
            "sql": run_sql,
            "search": lambda q: store.search(q.namespace, q.vector, k=k, now=now, **limits),
            "get": lambda q: cache.get(q.text, embedding=q.vector, namespace=q.namespace),
        }
        times, results = take_turns(calls, qs, warmup)
    out: dict[str, Any] = {name: m.summary(ts) for name, ts in times.items()}
    out["get_layers"] = dict(Counter(getattr(r, "layer", None) or "miss" for r in results["get"]))
    out["statement"] = search.source
    out["k"] = k
    out["get_minus_search_ms"] = round(out["get"]["p50"] - out["search"]["p50"], 4)
    out["get_minus_sql_ms"] = round(out["get"]["p50"] - out["sql"]["p50"], 4)
    return out


def head_to_head(
    cache: Any, bytea_spec: dict[str, Any], sets: dict[str, list[Query]], warmup: int
) -> dict[str, Any]:
    """Paraphrase gets through this cache and through a BYTEA + NumPy cache opened on
    the same schema, taking turns query by query, who goes first alternating. The
    stores' own lookup phases run minutes apart, and on a noisy machine the in-process
    100k p50 moved between 0.88 and 1.30 ms from one run to the next; taking turns puts
    any drift on both alike (``take_turns``). Per set: the latency summary and hit rate
    of each, and pgvector's p50 over BYTEA's."""
    from mneme import SemanticCache

    log("  pgvector: head to head with BYTEA + NumPy on the same rows")
    started = time.perf_counter()
    other = SemanticCache(store=m.make_store(bytea_spec), **m.cache_kwargs(bytea_spec))
    out: dict[str, Any] = {"bytea_open_s": round(time.perf_counter() - started, 2)}
    calls: dict[str, Callable[[Query], Any]] = {
        kind: lambda q, c=c: c.get(q.text, embedding=q.vector, namespace=q.namespace)
        for kind, c in (("pgvector", cache), ("bytea", other))
    }
    try:
        for name, qs in sets.items():
            times, results = take_turns(calls, qs, warmup)
            row: dict[str, Any] = {k: m.summary(v) for k, v in times.items()}
            row["hit_rate"] = {
                k: round(sum(r is not None for r in got) / max(1, len(got)), 4)
                for k, got in results.items()
            }
            row["p50_ratio"] = round(row["pgvector"]["p50"] / row["bytea"]["p50"], 3)
            out[name] = row
            log(
                f"    {name}: pgvector {row['pgvector']['p50']:.3f} ms, "
                f"BYTEA + NumPy {row['bytea']['p50']:.3f} ms (p50)"
            )
    finally:
        other.close()
    return out
