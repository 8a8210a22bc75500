"""``mneme bench``: a quick, self-contained timing of put_many and get on one target.

It writes into a scratch place of its own (a temporary SQLite file, or a temporary
schema on the Postgres server given, dropped afterwards), never into a cache in use.
The full benchmark suite (``make bench``) lives in the repository's benchmarks/.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import click

from mneme._types import Progress
from mneme.cache.sync_cache import SemanticCache
from mneme.cli.app import cli, examples, resolve
from mneme.cli.embedders import load_embedder
from mneme.cli.progress import Bars
from mneme.cli.target import Target

__all__: list[str] = []


def _question(i: int) -> str:
    return f"how do I configure feature {i} of product {i % 97} on a small server"


def _paraphrase(i: int) -> str:
    return f"how can I configure feature {i} of product {i % 97} on a small server"


def _timed(name: str, n: int, call: Callable[[int], object], bars: Bars) -> tuple[list[float], int]:
    times, hits = [], 0
    bars(Progress(name, 0, n, "calls"))
    for i in range(n):
        started = time.perf_counter()
        if call(i) is not None:
            hits += 1
        times.append(time.perf_counter() - started)
        if (i + 1) % 50 == 0 or i + 1 == n:
            bars(Progress(name, i + 1, n, "calls"))
    return times, hits


def _get(cache: SemanticCache, text: Callable[[int], str], step: int, i: int) -> object:
    return cache.get(text(i * step))


def _row(name: str, times: list[float], hits: int | None) -> dict[str, Any]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {
        "operation": name,
        "calls": len(times),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
        "per_second": round(len(times) / sum(times), 1),
        "hits": hits,
    }


def _scratch_store(target: Target | None, dir_: str, pgvector: bool) -> tuple[Any, str]:
    if target is None or not target.is_postgres:
        path = os.path.join(dir_, "bench.db")
        from mneme.stores.sqlite import SQLiteStore

        return SQLiteStore(path), "SQLite (a temporary file)"
    schema = f"mneme_bench_{uuid.uuid4().hex[:12]}"
    scratch = Target(path=None, dsn=target.dsn, schema=schema)
    store = scratch.postgres_store(use_pgvector=pgvector)
    return store, f"{scratch.label} (temporary)"


def _drop_schema(target: Target | None, store: Any) -> None:
    if target is None or not target.is_postgres:
        return
    from psycopg import sql

    with target.connect() as conn:
        drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
        conn.execute(drop.format(sql.Identifier(store.schema)))


@cli.command(
    epilog=examples(
        "mneme bench",
        "mneme bench postgresql://app@db.internal/app --pgvector --entries 5000",
    )
)
@click.argument("target", required=False, envvar="MNEME_TARGET")
@click.option("--entries", default=2000, show_default=True, help="Entries to put.")
@click.option("--lookups", default=300, show_default=True, help="Timed gets of each kind.")
@click.option("--dim", default=384, show_default=True, help="Embedding dimension.")
@click.option("--pgvector", is_flag=True, help="On Postgres: search with pgvector.")
@click.option("--embedder", help="module:factory of your embedder (default: hashing).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def bench(
    target: str | None,
    entries: int,
    lookups: int,
    dim: int,
    pgvector: bool,
    embedder: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Time put_many and exact and semantic gets on a scratch copy of a store kind:
    a temporary SQLite file, or a temporary schema on the Postgres TARGET."""
    t = resolve(target, "mneme") if target else None
    if t is not None and t.is_postgres:
        t.connect().close()  # a bad DSN or a server that is down: exit 2 before any work
    emb = load_embedder(embedder, dim)
    bars = Bars(quiet=quiet)
    lookups = min(lookups, entries)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mneme-bench-") as dir_:
        store, where = _scratch_store(t, dir_, pgvector)
        try:
            with SemanticCache(store=store, embedder=emb, similarity_threshold=0.8) as cache:
                items = [{"query": _question(i), "response": f"answer {i}"} for i in range(entries)]
                started = time.perf_counter()
                cache.put_many(items, progress=bars)
                elapsed = time.perf_counter() - started
                rows.append(
                    {
                        "operation": "put_many",
                        "calls": 1,
                        "entries": entries,
                        "seconds": round(elapsed, 3),
                        "per_second": round(entries / elapsed, 1),
                    }
                )
                step = max(1, entries // lookups)
                kinds: list[tuple[str, Callable[[int], str]]] = [
                    ("get exact", _question),
                    ("get semantic", _paraphrase),
                ]
                for name, text in kinds:
                    times, hits = _timed(name, lookups, partial(_get, cache, text, step), bars)
                    rows.append(_row(name, times, hits))
        finally:
            bars.close()
            _drop_schema(t, store)
    if as_json:
        click.echo(json.dumps({"store": where, "dim": dim, "results": rows}, indent=2))
        return
    click.echo(f"{where}, {entries:,} entries, dim {dim}, embedder {emb.fingerprint}")
    for r in rows:
        if r["operation"] == "put_many":
            click.echo(
                f"put_many      {r['entries']:>7,} entries in {r['seconds']:.2f} s "
                f"({r['per_second']:,.0f} entries/s, embedding included)"
            )
        else:
            click.echo(
                f"{r['operation']:<13} {r['calls']:>7,} calls: p50 {r['p50_ms']:.2f} ms, "
                f"p99 {r['p99_ms']:.2f} ms, {r['hits']} hits"
            )
