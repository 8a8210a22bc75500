"""Write a suite result as JSON, a markdown page of tables, and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STORE_LABELS = {
    "sqlite": "SQLite + NumPy",
    "bytea": "Postgres BYTEA + NumPy",
    "pgvector": "Postgres pgvector",
}
PLOT_DIM = 384
COLOURS = ("tab:blue", "tab:orange", "tab:green")


def _available(row: dict[str, Any] | None) -> bool:
    return bool(row) and row.get("available", True) and "lookups" in row  # type: ignore[union-attr]


def _lat(row: dict[str, Any], kind: str, stat: str) -> str:
    value = row["lookups"][kind]["latency_ms"].get(stat)
    return "-" if value is None else f"{value:.2f}"


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f}"


def markdown(result: dict[str, Any]) -> str:
    mach, srv = result["machine"], result.get("server", {})
    lines = [
        f"# mneme benchmark — {result['started'][:10]}, {result['mode']} run",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['memory_gib']} GiB, "
        f"Python {mach['python']}, NumPy {mach['numpy']}  ",
        f"Server: PostgreSQL {srv.get('server_version')} + pgvector {srv.get('pgvector')}, "
        f"{srv.get('where')}, shared_buffers {srv.get('shared_buffers')}  ",
        f"Workload seed {result['seed']}; per kind {result['plan']['queries']} timed queries after "
        f"{result['plan']['warmup']} warm-up; elapsed {result.get('elapsed_s', 0):.0f} s.",
        "",
        "Latencies in ms (p50 / p99) through `SemanticCache.get` with an explicit embedding. "
        "*hit*: paraphrase of a stored entry; *miss*: unrelated query; *topic*: new question "
        "on a stored topic (a miss, the hard case for approximate search). recall@1: the "
        "paraphrase hit returned the exact nearest neighbour (NumPy over the namespace).",
        "",
        "| N x dim | store | load rows/s | open p50 ms | RSS MB | exact | hit | miss | topic "
        "| recall@1 | size MB |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    notes: list[str] = []
    for case in result["cases"]:
        label = f"{case['n']:,} x {case['dim']}"
        for store, row in case["stores"].items():
            name = STORE_LABELS[store]
            if not _available(row):
                why = row.get("reason") or row.get("error") or "not measured"
                lines.append(f"| {label} | {name} | not available | | | | | | | | |")
                notes.append(f"{label} {name}: {why}")
                continue
            load = row.get("load", {}).get("rows_per_s")
            load_s = f"{load:,.0f}" if load else f"index build {row.get('index_build_s', 0):.1f} s"
            lk = row["lookups"]
            size = row.get("size", {}).get("total_bytes")
            lines.append(
                f"| {label} | {name} | {load_s} | {row['open_ms']['p50']:.1f} "
                f"| {row['rss_mb']:.0f} "
                f"| {_lat(row, 'exact', 'p50')} / {_lat(row, 'exact', 'p99')} "
                f"| {_lat(row, 'near', 'p50')} / {_lat(row, 'near', 'p99')} "
                f"| {_lat(row, 'miss', 'p50')} / {_lat(row, 'miss', 'p99')} "
                f"| {_lat(row, 'topic', 'p50')} / {_lat(row, 'topic', 'p99')} "
                f"| {lk['near'].get('recall_at_1', 0):.3f} | {_mb(size)} |"
            )
    lines += [
        "",
        "Namespace sizes per case (pgvector searches namespaces of at most 2,000 rows "
        "exactly, larger ones with the HNSW index):",
        "",
    ]
    for case in result["cases"]:
        ns = case.get("namespaces")
        if ns:
            lines.append(
                f"* {case['n']:,} x {case['dim']}: largest {ns['rows_largest']:,} rows, "
                f"smallest {ns['rows_smallest']:,}; {ns['over_2000_rows']} of 50 namespaces "
                f"over 2,000 rows, receiving {ns['query_share_over']:.0%} of the queries"
            )
    if notes:
        lines += ["", *[f"* {n}" for n in notes]]

    lines += [
        "",
        "## Throughput, mixed lookups (40% exact, 30% hit, 30% miss)",
        "",
        "One `SemanticCache` shared by all client threads; Postgres stores borrow from a "
        "`psycopg_pool.ConnectionPool` sized to the clients. ops/s (p50 / p99 ms per call).",
        "",
        "| N x dim | store | 1 client | 4 clients | 16 clients |",
        "|---|---|--:|--:|--:|",
    ]
    for case in result["cases"]:
        for store, row in case["stores"].items():
            if not _available(row):
                continue
            cells = [
                f"{c['ops_per_s']:,.0f} ({c['p50']:.2f} / {c['p99']:.2f})"
                for c in row["concurrency"]
            ]
            lines.append(
                f"| {case['n']:,} x {case['dim']} | {STORE_LABELS[store]} | "
                + " | ".join(cells)
                + " |"
            )

    lines += [
        "",
        "## pgvector: index build and recall against ef_search",
        "",
        "Store-level top-1 search (`PostgresStore.search(k=1)`), recall@1 against exact "
        "search, p50 latency in ms.",
        "",
        "| N x dim | build s | maintenance_work_mem | index MB | table+indexes MB | ef_search "
        "| recall@1 hit | recall@1 topic | p50 hit | p50 topic |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for case in result["cases"]:
        row = case["stores"].get("pgvector", {})
        if not _available(row):
            continue
        size = row.get("size", {})
        for k, ef in enumerate(row.get("ef_sweep", [])):
            head = (
                f"| {case['n']:,} x {case['dim']} | {row['index_build_s']:.1f} "
                f"| {row['maintenance_work_mem_mb']} MB | {_mb(size.get('index_bytes'))} "
                f"| {_mb(size.get('total_bytes'))} "
                if k == 0
                else "| | | | | "
            )
            lines.append(
                head + f"| {ef['ef_search']} | {ef['near']['recall_at_1']:.3f} "
                f"| {ef['topic']['recall_at_1']:.3f} "
                f"| {ef['near']['latency_ms']['p50']:.2f} "
                f"| {ef['topic']['latency_ms']['p50']:.2f} |"
            )
        if "ef_sweep_error" in row:
            lines.append(
                f"| {case['n']:,} x {case['dim']} | {row['ef_sweep_error']} | | | | | | | | |"
            )
    lines += ["", "Plots: " + ", ".join(f"![{p}]({p})" for p in plot_names(result)), ""]
    return "\n".join(lines)


def plot_names(result: dict[str, Any]) -> list[str]:
    stem = result["stem"]
    return [f"{stem}-{name}.png" for name in ("latency", "recall", "open", "rss")]


def plots(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = sorted((c for c in result["cases"] if c["dim"] == PLOT_DIM), key=lambda c: c["n"])
    names = dict(zip(("latency", "recall", "open", "rss"), plot_names(result), strict=True))
    title = f"{result['machine']['nproc']} CPUs, dim {PLOT_DIM}, {result['mode']} run"

    def n_axis(ax: Any) -> None:
        ns = [c["n"] for c in cases]
        ax.set_xscale("log")
        ax.set_xticks(ns, [f"{n // 1000:,}k" if n < 10**6 else f"{n / 1e6:g}M" for n in ns])
        ax.minorticks_off()

    def series(store: str, pick: Any) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for c in cases:
            row = c["stores"].get(store)
            if row is not None and _available(row):
                xs.append(c["n"])
                ys.append(pick(row))
        return xs, ys

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (store, label), colour in zip(STORE_LABELS.items(), COLOURS, strict=True):
        for stat, style in (("p50", "-o"), ("p99", "--x")):
            xs, ys = series(store, lambda r, s=stat: r["lookups"]["near"]["latency_ms"][s])
            if xs:
                ax.plot(xs, ys, style, color=colour, label=f"{label} hit {stat}")
    n_axis(ax)
    ax.set(
        yscale="log",
        xlabel="entries (N)",
        ylabel="ms",
        title=f"Semantic-hit latency — {title}",
    )
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / names["latency"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for c in cases:
        row = c["stores"].get("pgvector", {})
        sweep = row.get("ef_sweep") if _available(row) else None
        if sweep:
            efs = [e["ef_search"] for e in sweep]
            ax.plot(
                efs,
                [e["near"]["recall_at_1"] for e in sweep],
                "-o",
                label=f"N={c['n']:,} paraphrase",
            )
            ax.plot(
                efs, [e["topic"]["recall_at_1"] for e in sweep], "--x", label=f"N={c['n']:,} topic"
            )
    if not ax.lines:
        ax.text(0.5, 0.5, "pgvector not available in this run", ha="center", transform=ax.transAxes)
    ax.set(
        xscale="log", xlabel="hnsw.ef_search", ylabel="recall@1", title=f"pgvector recall — {title}"
    )
    ax.legend(fontsize=7) if ax.lines else None
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / names["recall"], dpi=110)
    plt.close(fig)

    for key, pick, ylabel, what in (
        ("open", lambda r: r["open_ms"]["p50"], "ms (median)", "Cold open of a new SemanticCache"),
        ("rss", lambda r: r["rss_mb"], "MB", "Process RSS added by opening"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (store, label), colour in zip(STORE_LABELS.items(), COLOURS, strict=True):
            xs, ys = series(store, pick)
            if xs:
                ax.plot(xs, ys, "-o", color=colour, label=label)
        n_axis(ax)
        ax.set(
            yscale="log",
            xlabel="entries (N)",
            ylabel=ylabel,
            title=f"{what} — {title}",
        )
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / names[key], dpi=110)
        plt.close(fig)


def write_all(result: dict[str, Any], out: Path, stem: str) -> None:
    result["stem"] = stem
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(result))
    plots(result, out)
