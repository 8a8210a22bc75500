"""``mneme export`` and ``mneme import``: the portable dump (JSON lines, the format of
``SemanticCache.dumps``), between any two targets.

Export writes to ``FILE.tmp`` and renames it only when complete. Import goes through
the library's loader (``SemanticCache.load``): the file's header names its embedder,
which must be the target's (an empty target takes it). Each batch is one transaction
and entries are keyed by namespace and query, so an import stopped by Ctrl-C leaves
whole batches only, and running it again finishes it without duplicates.
"""

from __future__ import annotations

import click

from mneme.cache.dump import read_header
from mneme.cli.app import cli, examples, resolve, target_arguments
from mneme.cli.progress import Bars
from mneme.cli.stores import open_cache

__all__: list[str] = []


@cli.command(
    "export",
    epilog=examples(
        "mneme export cache.db cache.jsonl",
        "mneme export postgresql://app@db.internal/app cache.jsonl --schema mneme",
    ),
)
@target_arguments
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def export(target: str, schema: str, file: str, quiet: bool) -> None:
    """Write every entry of TARGET to FILE (portable JSON lines)."""
    t = resolve(target, schema)
    meta = t.read_meta()
    assert meta is not None and meta.fingerprint is not None and meta.dim is not None
    bars = Bars(quiet=quiet)
    try:
        with open_cache(t, meta.fingerprint, meta.dim) as cache:
            count = cache.dumps(file, progress=bars)
    finally:
        bars.close()
    click.echo(f"exported {count:,} entries from {t.label} to {file}")


@cli.command(
    "import",
    epilog=examples(
        "mneme import cache.db cache.jsonl",
        "mneme import postgresql://app@db.internal/app cache.jsonl --schema mneme",
    ),
)
@target_arguments
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def import_(target: str, schema: str, file: str, quiet: bool) -> None:
    """Load FILE (written by export or SemanticCache.dumps) into TARGET, replacing
    entries with the same namespace and query. An empty TARGET is created."""
    t = resolve(target, schema)
    header = read_header(file)
    fingerprint, dim = str(header["fingerprint"]), int(str(header["dim"]))
    t.read_meta(must_exist=False)  # a target that is not a cache at all fails here
    bars = Bars(quiet=quiet)
    try:
        with open_cache(t, fingerprint, dim) as cache:
            count = cache.load(file, progress=bars)
            entries = cache.stats().entries
    finally:
        bars.close()
    click.echo(f"imported {count:,} entries into {t.label} (it now holds {entries:,})")
