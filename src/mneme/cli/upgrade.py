"""``mneme upgrade --pgvector`` and ``mneme reindex`` (alias ``rebuild-index``).

The upgrade is the library's own (``PostgresStore(use_pgvector=True)`` at open): the
side table and its flag first, in one short transaction, then a backfill a batch per
transaction, then ``CREATE INDEX CONCURRENTLY``. Each step is whole or not done, so
Ctrl-C leaves a schema every store opens, and running the command again resumes: the
backfill skips rows already copied, an index left invalid is dropped and rebuilt.
"""

from __future__ import annotations

import click

from mneme._errors import StoreBackendError
from mneme._types import Progress, ProgressFn
from mneme.cli.app import cli, examples, resolve, target_arguments
from mneme.cli.pgwatch import watch_index_build, with_index_watch
from mneme.cli.progress import Bars
from mneme.cli.stores import open_store
from mneme.cli.target import Meta, Target, TargetError
from mneme.stores.postgres.store import PostgresStore

__all__ = ["rebuild_indexes"]


def _postgres_meta(target: Target, command: str) -> Meta:
    if not target.is_postgres:
        raise TargetError(
            f"mneme {command} works on a Postgres schema (a DSN and --schema), "
            f"not on a SQLite file ({target.path})"
        )
    meta = target.read_meta()
    assert meta is not None
    return meta


@cli.command(
    epilog=examples(
        "mneme upgrade --pgvector postgresql://app@db.internal/app --schema mneme",
        "MNEME_TARGET='postgresql://app:secret@db/app' mneme upgrade --pgvector",
    )
)
@target_arguments
@click.option(
    "--pgvector", is_flag=True, help="Add the pgvector side table and the namespaces' indexes."
)
@click.option("--hnsw-m", default=16, show_default=True, help="HNSW graph degree.")
@click.option(
    "--hnsw-ef-construction", default=128, show_default=True, help="HNSW build candidate list."
)
@click.option(
    "--ivfflat-max-rows",
    default=50_000,
    show_default=True,
    help="Namespaces up to this many rows get an IVFFlat index, larger ones an HNSW graph.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def upgrade(
    target: str,
    schema: str,
    pgvector: bool,
    hnsw_m: int,
    hnsw_ef_construction: int,
    ivfflat_max_rows: int,
    quiet: bool,
) -> None:
    """Upgrade a filled schema in place, online: writers keep writing meanwhile.

    Stopping it (Ctrl-C) and running it again resumes where it was.
    """
    if not pgvector:
        raise click.UsageError("say what to upgrade to: --pgvector")
    t = resolve(target, schema)
    meta = _postgres_meta(t, "upgrade --pgvector")
    bars = Bars(quiet=quiet)
    relay, watch = with_index_watch(t, bars)
    try:
        with open_store(
            t,
            meta,
            use_pgvector=True,
            hnsw_m=hnsw_m,
            hnsw_ef_construction=hnsw_ef_construction,
            ivfflat_max_rows=ivfflat_max_rows,
            progress=relay,
        ) as store:
            assert isinstance(store, PostgresStore)
            entries = store.count()
            graphs = store.vector_index_status()
    finally:
        watch.close()
        bars.close()
    ready = sum(g.state == "ready" for g in graphs)
    exact = sum(g.state != "ready" for g in graphs)
    click.echo(
        f"{t.label}: pgvector side table complete ({entries:,} entries); "
        f"{ready} namespace graph(s) ready, {exact} namespace(s) searched exactly"
    )


def rebuild_indexes(store: PostgresStore, target: Target, progress: ProgressFn) -> None:
    """Build the graph of every large namespace that lacks a valid one, then rebuild the
    existing graphs (REINDEX CONCURRENTLY), reporting progress."""
    store.build_vector_indexes(progress=progress)
    total = store.count()
    progress(Progress("index", 0, total))
    with watch_index_build(target, "entry_vectors", total, progress):
        store.rebuild_vector_index()
    progress(Progress("index", total, total))


@cli.command(
    epilog=examples(
        "mneme reindex postgresql://app@db.internal/app --schema mneme",
        "mneme rebuild-index postgresql://app@db.internal/app",
    )
)
@target_arguments
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def reindex(target: str, schema: str, quiet: bool) -> None:
    """Build the vector index of every large namespace that lacks one (or has outgrown
    its IVFFlat index), then rebuild the existing ones, all without blocking writers
    (CREATE / REINDEX ... CONCURRENTLY).

    Worth doing after many deletes or replacements, before VACUUM.
    """
    t = resolve(target, schema)
    meta = _postgres_meta(t, "reindex")
    if meta.vector_index is None:
        raise StoreBackendError(
            f"{t.label} has no pgvector index to rebuild; add one with: mneme upgrade --pgvector"
        )
    bars = Bars(quiet=quiet)
    try:
        with open_store(t, meta, use_pgvector=True) as store:
            assert isinstance(store, PostgresStore)
            rebuild_indexes(store, t, bars)
    finally:
        bars.close()
    click.echo(f"{t.label}: namespace indexes built and rebuilt")


cli.add_command(reindex, name="rebuild-index")
