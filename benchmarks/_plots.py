"""PNG plots of a suite result (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STORE_LABELS = {
    "sqlite": "SQLite + NumPy",
    "bytea": "Postgres BYTEA + NumPy",
    "pgvector": "Postgres pgvector",
}
COLOURS = dict(zip(STORE_LABELS, ("tab:blue", "tab:orange", "tab:green"), strict=True))
PLOT_DIM = 384
NAMES = ("latency", "recall", "open", "rss", "classes", "writes", "planning", "floor")
CLASSES = ("large", "medium", "small", "tiny")


def names(result: dict[str, Any]) -> list[str]:
    return [f"{result['stem']}-{name}.png" for name in NAMES]


def _available(row: dict[str, Any] | None) -> bool:
    return bool(row) and row.get("available", True) and "lookups" in row  # type: ignore[union-attr]


def _ns(case: dict[str, Any]) -> int:
    ns = case.get("namespaces")
    return ns if isinstance(ns, int) else 50  # older results kept a summary under this key


def _short(case: dict[str, Any]) -> str:
    n = case["n"]
    text = f"{n // 1000:,}k" if n < 10**6 else f"{n / 1e6:g}M"
    if case["dim"] != PLOT_DIM:
        text += f"x{case['dim']}"
    ns = _ns(case)
    return text if ns == 50 else f"{text}/{ns:,}ns"


def _save(fig: Any, ax: Any, out: Path, name: str) -> None:
    import matplotlib.pyplot as plt

    if ax is not None:
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)


def _bars(ax: Any, groups: list[str], series: dict[str, list[float | None]]) -> None:
    """Grouped bars: one group per x label, one bar per series (None: no bar)."""
    width = 0.8 / max(1, len(series))
    for k, (label, values) in enumerate(series.items()):
        xs = [g + (k - (len(series) - 1) / 2) * width for g in range(len(groups))]
        pairs = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        if pairs:
            ax.bar(
                [p[0] for p in pairs],
                [p[1] for p in pairs],
                width,
                label=label,
                color=COLOURS.get(label),
            )
    ax.set_xticks(range(len(groups)), groups, rotation=45, ha="right", fontsize=7)


def plots(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = dict(zip(NAMES, names(result), strict=True))
    title = f"{result['machine']['nproc']} CPUs, {result['mode']} run"
    by_n = sorted(
        (c for c in result["cases"] if c["dim"] == PLOT_DIM and _ns(c) == 50),
        key=lambda c: c["n"],
    )
    many = [c for c in result["cases"] if _ns(c) != 50]

    def n_axis(ax: Any) -> None:
        ns = sorted({c["n"] for c in by_n + many})
        ax.set_xscale("log")
        ax.set_xticks(ns, [f"{n // 1000:,}k" if n < 10**6 else f"{n / 1e6:g}M" for n in ns])
        ax.minorticks_off()

    def series(cases: list[dict[str, Any]], store: str, pick: Any) -> tuple[list[int], list[Any]]:
        xs, ys = [], []
        for c in cases:
            row = c["stores"].get(store)
            if row is not None and _available(row):
                xs.append(c["n"])
                ys.append(pick(row))
        return xs, ys

    # Semantic-hit latency against N (50 tenants), the many-tenant cases as stars.
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for store, label in STORE_LABELS.items():
        for stat, style in (("p50", "-o"), ("p99", "--x")):
            pick = lambda r, s=stat: r["lookups"]["near"]["latency_ms"][s]  # noqa: E731
            xs, ys = series(by_n, store, pick)
            if xs:
                ax.plot(xs, ys, style, color=COLOURS[store], label=f"{label} hit {stat}")
            xs, ys = series(many, store, pick)
            if xs:
                ax.plot(xs, ys, "*", ms=11, color=COLOURS[store], label=f"{label} {stat}, 1,000 ns")
    n_axis(ax)
    ax.set(yscale="log", xlabel="entries (N)", ylabel="ms", title=f"Semantic hit — {title}")
    ax.legend(fontsize=6)
    _save(fig, ax, out, files["latency"])

    # pgvector recall against ef_search.
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for c in result["cases"]:
        row = c["stores"].get("pgvector", {})
        sweep = row.get("ef_sweep") if _available(row) else None
        if sweep:
            efs = [e["ef_search"] for e in sweep]
            ax.plot(efs, [e["near"]["recall_at_1"] for e in sweep], "-o", label=f"{_short(c)} hit")
            ax.plot(
                efs, [e["topic"]["recall_at_1"] for e in sweep], "--x", label=f"{_short(c)} topic"
            )
    if not ax.lines:
        ax.text(0.5, 0.5, "pgvector not available in this run", ha="center", transform=ax.transAxes)
    ax.set(xscale="log", xlabel="hnsw.ef_search", ylabel="recall@1", title=f"pgvector — {title}")
    if ax.lines:
        ax.legend(fontsize=7)
    _save(fig, ax, out, files["recall"])

    for key, pick, ylabel, what in (
        ("open", lambda r: r["open_ms"]["p50"], "ms (median)", "Cold open of a new SemanticCache"),
        ("rss", lambda r: r["rss_mb"], "MB", "Process RSS added by opening"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for store, label in STORE_LABELS.items():
            xs, ys = series(by_n, store, pick)
            if xs:
                ax.plot(xs, ys, "-o", color=COLOURS[store], label=label)
        n_axis(ax)
        ax.set(yscale="log", xlabel="entries (N)", ylabel=ylabel, title=f"{what} — {title}")
        ax.legend(fontsize=8)
        _save(fig, ax, out, files[key])

    _class_plot(result, out / files["classes"], title)
    _writes_plot(result, out / files["writes"], title)
    _planning_plot(result, out / files["planning"], title)
    _floor_plot(result, out / files["floor"], title)


def _class_plot(result: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    groups: list[str] = []
    recall: dict[str, list[float | None]] = {s: [] for s in STORE_LABELS}
    p50: dict[str, list[float | None]] = {s: [] for s in STORE_LABELS}
    for c in result["cases"]:
        for cls in c.get("classes") or {}:
            groups.append(f"{_short(c)} {cls}")
            for s in STORE_LABELS:
                row = c["stores"].get(s)
                r = (row or {}).get("classes", {}).get(cls) if _available(row) else None
                recall[s].append(None if not r else r.get("recall_at_1"))
                p50[s].append(None if not r else r["latency_ms"].get("p50"))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    _bars(top, groups, {STORE_LABELS[s]: v for s, v in recall.items()})
    top.axhline(0.98, color="red", lw=0.8, ls="--", label="target 0.98")
    top.set(ylabel="recall@1", ylim=(0.9, 1.005), title=f"By namespace size class — {title}")
    top.legend(fontsize=7)
    _bars(bottom, groups, {STORE_LABELS[s]: v for s, v in p50.items()})
    bottom.axhline(3.0, color="red", lw=0.8, ls="--")
    bottom.set(ylabel="hit p50 ms", yscale="log")
    _save(fig, None, path.parent, path.name)


def _writes_plot(result: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    groups: list[str] = []
    p50: dict[str, list[float | None]] = {s: [] for s in STORE_LABELS}
    for c in result["cases"]:
        sets = ["mixed", *[k for k in CLASSES if k in (c.get("classes") or {})]]
        for name in sets:
            groups.append(f"{_short(c)} {'by size' if name == 'mixed' else name}")
            for s in STORE_LABELS:
                puts = (c["stores"].get(s) or {}).get("puts") or {}
                p50[s].append((puts.get(name) or {}).get("p50"))
    loads: list[str] = []
    rates: dict[str, list[float | None]] = {s: [] for s in STORE_LABELS}
    for c in result["cases"]:
        loads.append(_short(c))
        for s in STORE_LABELS:
            rates[s].append(((c["stores"].get(s) or {}).get("load") or {}).get("rows_per_s"))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7))
    _bars(top, groups, {STORE_LABELS[s]: v for s, v in p50.items()})
    top.axhline(3.0, color="red", lw=0.8, ls="--", label="target 3 ms")
    top.set(ylabel="put p50 ms", yscale="log", title=f"Writes — {title}")
    top.legend(fontsize=7)
    _bars(bottom, loads, {STORE_LABELS[s]: v for s, v in rates.items()})
    bottom.axhline(10_000, color="red", lw=0.8, ls="--")
    bottom.set(ylabel="put_many rows/s")
    _save(fig, None, path.parent, path.name)


def _planning_plot(result: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    groups: list[str] = []
    warm: list[float | None] = []
    first: list[float | None] = []
    for c in result["cases"]:
        p = (c["stores"].get("pgvector") or {}).get("planning")
        for cls, r in (p or {}).get("classes", {}).items():
            groups.append(f"{_short(c)} {cls}")
            warm.append(r["planning_ms"].get("p50"))
            first.append((r.get("first_planning_ms") or {}).get("p50"))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if groups:
        _bars(ax, groups, {"warm connection p50": warm, "first on a connection p50": first})
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
    ax.set(ylabel="planning ms", yscale="log", title=f"Search planning time — {title}")
    _save(fig, ax, path.parent, path.name)


def _floor_plot(result: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    groups: list[str] = []
    values: dict[str, list[float | None]] = {"bare SQL": [], "store.search": [], "cache.get": []}
    for c in result["cases"]:
        f = (c["stores"].get("pgvector") or {}).get("floor")
        if f:
            groups.append(_short(c))
            for label, key in zip(values, ("sql", "search", "get"), strict=True):
                values[label].append(f[key].get("p50"))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if groups:
        _bars(ax, groups, values)
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
    ax.set(ylabel="p50 ms", title=f"Layer-2 hit against its floor — {title}")
    _save(fig, ax, path.parent, path.name)
