"""``mneme stats`` and ``mneme namespaces``: what a cache holds and how it is used."""

from __future__ import annotations

import json
from typing import Any

import click

from mneme.cli.app import cli, examples, resolve, target_arguments
from mneme.cli.stores import open_store
from mneme.cli.target import Meta, Target
from mneme.stores.protocol import COUNTER_NAMES, BatchStore

__all__ = ["namespace_rows"]

_COLUMNS = [
    ("namespace", "namespace"),
    ("entries", "entries"),
    ("hits_exact", "exact hits"),
    ("hits_semantic", "semantic hits"),
    ("misses", "misses"),
    ("evictions", "evictions"),
    ("expirations", "expirations"),
]


def namespace_rows(store: BatchStore) -> list[dict[str, Any]]:
    """One row per namespace: entries and the persisted counters."""
    rows = []
    for ns in store.list_namespaces():
        counters = store.read_counters(ns)
        rows.append(
            {"namespace": ns, "entries": store.count(ns)}
            | {name: int(counters.get(name, 0)) for name in COUNTER_NAMES}
        )
    return rows


def _total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    names = ["entries", *COUNTER_NAMES]
    return {"namespace": "(all)"} | {n: sum(int(r[n]) for r in rows) for n in names}


def table(rows: list[dict[str, Any]]) -> str:
    """Rows as aligned text columns: names left, numbers right."""
    cells = [[title for _, title in _COLUMNS]]
    for r in rows:
        cells.append([str(r[k]) if k == "namespace" else f"{r[k]:,}" for k, _ in _COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    lines = []
    for row in cells:
        first = row[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        lines.append("  ".join([first, *rest]).rstrip())
    return "\n".join(lines)


def _read(target: Target) -> tuple[Meta, list[dict[str, Any]]]:
    meta = target.read_meta()
    assert meta is not None
    with open_store(target, meta) as store:
        assert isinstance(store, BatchStore)  # every store of this package is one
        return meta, namespace_rows(store)


@cli.command(
    epilog=examples(
        "mneme stats cache.db",
        "mneme stats postgresql://app@db.internal/app --schema mneme --json",
    )
)
@target_arguments
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def stats(target: str, schema: str, as_json: bool) -> None:
    """What the cache holds: its embedder, and entries, hits, misses and evictions per
    namespace. Reads only; needs no embedder."""
    t = resolve(target, schema)
    meta, rows = _read(t)
    total = _total(rows)
    if as_json:
        doc = {
            "target": t.label,
            "embedder": {"fingerprint": meta.fingerprint, "dim": meta.dim},
            "schema_version": meta.schema_version,
            "vector_index": meta.vector_index,
            "namespaces": rows,
            "total": {k: v for k, v in total.items() if k != "namespace"},
        }
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(t.label)
    click.echo(f"embedder: {meta.fingerprint} (dim {meta.dim})")
    layer2 = "pgvector " + meta.vector_index if meta.vector_index else "in-process index"
    click.echo(f"schema version {meta.schema_version}, Layer 2: {layer2}")
    click.echo("")
    click.echo(table([*rows, total]))


@cli.command(
    epilog=examples(
        "mneme namespaces cache.db",
        "mneme namespaces postgresql://app@db.internal/app --json",
    )
)
@target_arguments
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def namespaces(target: str, schema: str, as_json: bool) -> None:
    """One line per namespace: entries, hits, misses, evictions, expirations."""
    t = resolve(target, schema)
    _meta, rows = _read(t)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(table(rows))
