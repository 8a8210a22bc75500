"""Write a suite result as JSON, a markdown page of tables, and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import _plots
import _targets

STORE_LABELS = {
    "sqlite": "SQLite + NumPy",
    "bytea": "Postgres BYTEA + NumPy",
    "pgvector": "Postgres pgvector",
}
CLASSES = ("large", "medium", "small", "tiny")


def _available(row: dict[str, Any] | None) -> bool:
    return bool(row) and row.get("available", True) and "lookups" in row  # type: ignore[union-attr]


def _label(case: dict[str, Any]) -> str:
    return str(case.get("label") or f"{case['n']:,} x {case['dim']}")


def _lat(row: dict[str, Any], kind: str, stat: str) -> str:
    value = row["lookups"][kind]["latency_ms"].get(stat)
    return "-" if value is None else f"{value:.2f}"


def _ms(s: dict[str, Any] | None, stat: str = "p50") -> str:
    value = None if not s else s.get(stat)
    return "-" if value is None else f"{value:.2f}"


def _pair(s: dict[str, Any] | None) -> str:
    return "-" if not s or not s.get("count") else f"{_ms(s)} / {_ms(s, 'p99')}"


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f}"


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _load_cell(store: str, row: dict[str, Any]) -> str:
    load = row.get("load") or {}
    rate = load.get("rows_per_s")
    cell = f"{rate:,.0f}" if rate else ""
    if rate and load.get("capped"):
        cell += f" ({load['rows'] // 1000:,}k rows)"
    if rate and "wal_mb" in load:
        created = load.get("wal_segments_created")
        cell += f" (WAL {load['wal_mb']:,.0f} MB" + (
            f", {created} new segments)" if created is not None else ")"
        )
    if store != "pgvector":
        return cell or "-"
    build = row.get("index_build_s")
    if build is not None:
        cell += f"{'; ' if cell else ''}graphs {build:.1f} s"
    return cell or "-"


def targets_markdown(result: dict[str, Any]) -> str:
    lines = ["| target | status | figure | case |", "|---|---|---|---|"]
    for t in _targets.evaluate(result):
        status = {"met": "met", "missed": "**missed**"}.get(t["status"], t["status"])
        lines.append(f"| {t['target']} | {status} | {t['figure']} | {t['case']} |")
    return "\n".join(lines)


def _head(result: dict[str, Any]) -> list[str]:
    mach, srv = result["machine"], result.get("server", {})
    lines = [
        f"# mneme benchmark — {result['started'][:10]}, {result['mode']} run",
        "",
        f"Command: `{result['command']}`  ",
        f"mneme: {result.get('mneme', {}).get('git', '?')}  ",
        f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['memory_gib']} GiB, "
        f"Python {mach['python']}, NumPy {mach['numpy']}  ",
        f"Server: PostgreSQL {srv.get('server_version')} + pgvector {srv.get('pgvector')}, "
        f"{srv.get('where')}, shared_buffers {srv.get('shared_buffers')}, "
        f"max_wal_size {srv.get('max_wal_size', 'default')}  ",
        f"Workload seed {result['seed']}; per kind {result['plan']['queries']} timed queries after "
        f"{result['plan']['warmup']} warm-up; elapsed {result.get('elapsed_s', 0):.0f} s.",
    ]
    notes = result.get("budget_notes") or []
    if notes:
        lines += ["", "Cuts made to fit the time budget:", "", *[f"* {n}" for n in notes]]
    return lines


def _main_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Lookups",
        "",
        "Latencies in ms (p50 / p99) through `SemanticCache.get` with an explicit embedding. "
        "*hit*: paraphrase of a stored entry; *miss*: unrelated query; *topic*: new question "
        "on a stored topic (a miss, the hard case for approximate search). recall@1: the "
        "paraphrase hit returned the exact nearest neighbour (NumPy over the namespace). "
        "*load rows/s*: `put_many` batches of 10,000; for pgvector into a fresh schema, then "
        "the time until every graph was built (in-place upgrade from BYTEA, or "
        "`build_vector_indexes()` after a direct load); in brackets the WAL the load "
        "wrote and the WAL segment files the server had to create for it (a new segment "
        "is zero-filled first; reusing an old one is not).",
        "",
        "| case | store | load rows/s | open p50 ms | RSS MB | exact | hit | miss | topic "
        "| recall@1 | size MB |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    notes: list[str] = []
    for case in result["cases"]:
        label = _label(case)
        for store, row in case["stores"].items():
            name = STORE_LABELS[store]
            if not _available(row):
                why = row.get("reason") or row.get("error") or "not measured"
                lines.append(f"| {label} | {name} | not available | | | | | | | | |")
                notes.append(f"{label} {name}: {why}")
                continue
            lk = row["lookups"]
            size = row.get("size", {}).get("total_bytes")
            lines.append(
                f"| {label} | {name} | {_load_cell(store, row)} | {row['open_ms']['p50']:.1f} "
                f"| {row['rss_mb']:.0f} "
                f"| {_lat(row, 'exact', 'p50')} / {_lat(row, 'exact', 'p99')} "
                f"| {_lat(row, 'near', 'p50')} / {_lat(row, 'near', 'p99')} "
                f"| {_lat(row, 'miss', 'p50')} / {_lat(row, 'miss', 'p99')} "
                f"| {_lat(row, 'topic', 'p50')} / {_lat(row, 'topic', 'p99')} "
                f"| {_rate(lk['near'].get('recall_at_1'))} | {_mb(size)} |"
            )
        for note in case.get("notes", []):
            notes.append(f"{label}: {note}")
    if notes:
        lines += ["", *[f"* {n}" for n in notes]]
    return lines


def _class_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## By namespace size class",
        "",
        "Paraphrase queries drawn per class (each class its own sample, so small classes are "
        "measured as well as large ones). Classes at 1M rows: *large* > 50k rows, *medium* "
        "5k-50k, *small* from the exact-scan threshold to 5k, *tiny* at most the threshold "
        "(searched exactly); the 50k and 5k bounds scale with N. Cells: recall@1 · p50 / "
        "p99 ms through `SemanticCache.get`.",
        "",
        "| case | class | namespaces | rows per namespace | share of queries | SQLite + NumPy "
        "| BYTEA + NumPy | pgvector |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for case in result["cases"]:
        for cls, info in (case.get("classes") or {}).items():
            cells = []
            for store in STORE_LABELS:
                row = case["stores"].get(store)
                r = (row or {}).get("classes", {}).get(cls) if _available(row) else None
                cells.append(
                    "-"
                    if not r
                    else f"{_rate(r.get('recall_at_1'))} · {_pair(r.get('latency_ms'))}"
                )
            lines.append(
                f"| {_label(case)} | {cls} | {info['namespaces']:,} "
                f"| {info['rows_min']:,}-{info['rows_max']:,} | {info['query_share']:.0%} "
                f"| " + " | ".join(cells) + " |"
            )
    return lines


def _writes_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Writes",
        "",
        "Single `SemanticCache.put` of a new entry into the loaded store, every index live, "
        "p50 / p99 ms: *by size* spreads the puts over namespaces in proportion to their "
        "size, the class columns round-robin over that class's namespaces. *put_many*: rows/s "
        "of the load (pgvector: into a fresh schema, graphs built afterwards). *fresh*: "
        "pgvector rows the puts left out of their graphs when they ended (searched exactly "
        "meanwhile), and the seconds the store's background pass took to move them in.",
        "",
        "| case | store | put_many rows/s | put by size | large | medium | small | tiny | fresh |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for case in result["cases"]:
        for store, row in case["stores"].items():
            puts = row.get("puts")
            if not _available(row) or not puts:
                continue
            cells = [_pair(puts.get(c)) for c in ("mixed", *CLASSES)]
            rate = (row.get("load") or {}).get("rows_per_s")
            fresh = row.get("fresh")
            moved = (
                f"{fresh['fresh_after_puts']:,} in {fresh['seconds_to_move']} s" if fresh else "-"
            )
            lines.append(
                f"| {_label(case)} | {STORE_LABELS[store]} | "
                f"{'-' if not rate else f'{rate:,.0f}'} | " + " | ".join(cells) + f" | {moved} |"
            )
    return lines


def _build_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## pgvector: graphs",
        "",
        "*open*: the first open with `use_pgvector=True` (for an upgrade: backfill and every "
        "graph, split from the store's log); *build_vector_indexes*: the call after it, "
        "until no graph is pending or building. States from `vector_index_status()`.",
        "",
        "| case | source | open s | backfill s | graphs s (log) | build_vector_indexes s "
        "| namespaces by state | rows in graphs | HNSW MB | IVFFlat MB | maintenance_work_mem |",
        "|---|---|--:|--:|--:|--:|---|--:|--:|--:|--:|",
    ]
    for case in result["cases"]:
        row = case["stores"].get("pgvector", {})
        if not row.get("available", True) or "open_s" not in row:
            continue
        status = row.get("vector_index_status") or {}
        states = ", ".join(f"{k} {v}" for k, v in (status.get("states") or {}).items())
        by_method = row.get("size", {}).get("indexes_by_method") or {}
        hnsw, ivfflat = by_method.get("hnsw", {}), by_method.get("ivfflat", {})
        build = row.get("build") or {}
        lines.append(
            f"| {_label(case)} | {row.get('source', 'upgrade')} | {row['open_s']:.1f} "
            f"| {row.get('backfill_s', '-')} | {row.get('graph_build_s', '-')} "
            f"| {build.get('seconds_until_settled', '-')} | {states or '-'} "
            f"| {(status.get('rows_by_state') or {}).get('ready', 0):,} "
            f"| {_mb(hnsw.get('bytes'))} ({hnsw.get('count', 0)}) "
            f"| {_mb(ivfflat.get('bytes'))} ({ivfflat.get('count', 0)}) "
            f"| {row.get('maintenance_work_mem_mb')} MB |"
        )
    return lines


def _planning_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## pgvector: planning time of the search statement",
        "",
        "`EXPLAIN (ANALYZE, SUMMARY)` of the store's own search statement with the store's "
        "session settings: on one warm connection, and as the first statement of a new "
        "connection. *graph*: share of plans that used the namespace's own vector index "
        "(HNSW or IVFFlat).",
        "",
        "| case | HNSW / IVFFlat indexes | class | planning p50 / p99 ms "
        "| first on a connection p50 ms | execution p50 ms | graph |",
        "|---|--:|---|--:|--:|--:|--:|",
    ]
    for case in result["cases"]:
        p = case["stores"].get("pgvector", {}).get("planning")
        if not p:
            continue
        for cls, r in p["classes"].items():
            share = r.get("graph_share")
            lines.append(
                f"| {_label(case)} | {p.get('hnsw_indexes', '-')} / "
                f"{p.get('ivfflat_indexes', '-')} | {cls} "
                f"| {_pair(r['planning_ms'])} | {_ms(r.get('first_planning_ms'))} "
                f"| {_ms(r['execution_ms'])} | {'-' if share is None else f'{share:.0%}'} |"
            )
    return lines


def _floor_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## pgvector: a Layer-2 hit against its floor",
        "",
        "The same paraphrase queries (Layer-1 misses, Layer-2 hits), taking turns (each turn "
        "gives the three different queries, so no walk finds its pages in the CPU caches): "
        "the store's own statement for the namespace run by hand, prepared, on a connection "
        "of its own (*bare SQL*), `PostgresStore.search` alone, and `SemanticCache.get`. "
        "p50 / p99 ms.",
        "",
        "| case | bare SQL | store.search | cache.get | get - search (p50) | get - SQL (p50) "
        "| get answered by |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for case in result["cases"]:
        f = case["stores"].get("pgvector", {}).get("floor")
        if not f:
            continue
        layers = ", ".join(f"{k} {v}" for k, v in f.get("get_layers", {}).items())
        lines.append(
            f"| {_label(case)} | {_pair(f['sql'])} | {_pair(f['search'])} | {_pair(f['get'])} "
            f"| {f['get_minus_search_ms']:+.3f} | {f['get_minus_sql_ms']:+.3f} | {layers} |"
        )
    return lines


def _turns_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## pgvector against BYTEA + NumPy, taking turns",
        "",
        "Paraphrase gets through the pgvector cache and through a BYTEA + NumPy cache opened "
        "on the same schema, alternating query by query (who goes first alternating too, "
        "each turn giving the two different queries), so that the machine's drift falls on "
        "both alike. p50 / p99 ms; ratio = pgvector p50 / BYTEA + NumPy p50.",
        "",
        "| case | queries | pgvector | BYTEA + NumPy | ratio | hit rate pgvector / BYTEA |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for case in result["cases"]:
        turns = case["stores"].get("pgvector", {}).get("head_to_head") or {}
        rows = [(name, row) for name, row in turns.items() if isinstance(row, dict)]
        for k, (name, row) in enumerate(rows):
            rates = row["hit_rate"]
            lines.append(
                f"| {_label(case) if k == 0 else ''} | {name} | {_pair(row['pgvector'])} "
                f"| {_pair(row['bytea'])} | {row['p50_ratio']:.2f} "
                f"| {rates['pgvector']:.3f} / {rates['bytea']:.3f} |"
            )
    return lines


def _throughput_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Throughput, mixed lookups (40% exact, 30% hit, 30% miss)",
        "",
        "One `SemanticCache` shared by all client threads; Postgres stores borrow from one "
        "`psycopg_pool.ConnectionPool` of 16 connections. ops/s (p50 / p99 ms per call).",
        "",
        "| case | store | 1 client | 4 clients | 16 clients |",
        "|---|---|--:|--:|--:|",
    ]
    for case in result["cases"]:
        for store, row in case["stores"].items():
            if not _available(row) or not row.get("concurrency"):
                continue
            cells = [
                f"{c['ops_per_s']:,.0f} ({c['p50']:.2f} / {c['p99']:.2f})"
                for c in row["concurrency"]
            ]
            lines.append(f"| {_label(case)} | {STORE_LABELS[store]} | " + " | ".join(cells) + " |")
    return lines


def _sweep_table(
    result: dict[str, Any], key: str = "ef_sweep", option: str = "ef_search"
) -> list[str]:
    which = (
        "HNSW graphs walk with it; IVFFlat indexes ignore it"
        if option == "ef_search"
        else "IVFFlat indexes read this many lists; HNSW graphs ignore it"
    )
    lines = [
        "",
        f"## pgvector: recall against {option}",
        "",
        "Store-level top-1 search (`PostgresStore.search(k=1)`), recall@1 against exact "
        f"search; p50 ms of the paraphrase queries ({which}).",
        "",
        f"| case | {option} | recall hit | recall topic | large | medium | small | tiny "
        "| p50 hit |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for case in result["cases"]:
        row = case["stores"].get("pgvector", {})
        for k, ef in enumerate(row.get(key, []) if _available(row) else []):
            classes = [_rate((ef.get(f"near_{c}") or {}).get("recall_at_1")) for c in CLASSES]
            lines.append(
                f"| {_label(case) if k == 0 else ''} | {ef[option]} "
                f"| {_rate(ef['near']['recall_at_1'])} | {_rate(ef['topic']['recall_at_1'])} | "
                + " | ".join(classes)
                + f" | {_ms(ef['near']['latency_ms'])} |"
            )
    return lines


def markdown(result: dict[str, Any]) -> str:
    lines = _head(result)
    lines += ["", "## Targets", "", targets_markdown(result)]
    lines += _main_table(result)
    lines += _class_table(result)
    lines += _writes_table(result)
    lines += _build_table(result)
    lines += _floor_table(result)
    lines += _turns_table(result)
    lines += _planning_table(result)
    lines += _sweep_table(result)
    lines += _sweep_table(result, "probes_sweep", "ivfflat_probes")
    lines += _throughput_table(result)
    lines += ["", "Plots: " + ", ".join(f"![{p}]({p})" for p in _plots.names(result)), ""]
    return "\n".join(lines)


def write_all(result: dict[str, Any], out: Path, stem: str) -> None:
    result["stem"] = stem
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(result))
    _plots.plots(result, out)
