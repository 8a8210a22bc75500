"""``mneme doctor``: is this cache set up right? Each problem comes with its fix."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from mneme.cli.app import EXIT_BAD_TARGET, EXIT_FAILED, cli, examples, resolve, target_arguments
from mneme.cli.findings import Finding
from mneme.cli.target import TargetError

__all__: list[str] = []


@cli.command(
    epilog=examples(
        "mneme doctor cache.db",
        "mneme doctor postgresql://app@db.internal/app --schema mneme",
        "mneme doctor postgresql://app@db.internal/app --json",
    )
)
@target_arguments
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_context
def doctor(ctx: click.Context, target: str, schema: str, as_json: bool) -> None:
    """Check the server, pgvector, indexes, settings, vector storage and bloat.

    Exit code 0 when nothing needs doing, 1 when a finding says what to fix, 2 when
    the target cannot be reached or holds no cache.
    """
    t = resolve(target, schema)
    code = 0
    try:
        if t.is_postgres:
            from mneme.cli.doctor_pg import check_postgres

            found = check_postgres(t)
        else:
            from mneme.cli.doctor_sqlite import check_sqlite

            found = check_sqlite(t)
    except TargetError as exc:
        found = [Finding("fail", "target", t.mask(str(exc)), "check the path, DSN and --schema")]
        code = EXIT_BAD_TARGET
    if code == 0 and any(f.problem for f in found):
        code = EXIT_FAILED
    if as_json:
        doc = {"target": t.label, "problems": sum(f.problem for f in found)}
        click.echo(json.dumps(doc | {"findings": [asdict(f) for f in found]}, indent=2))
    else:
        click.echo(t.label)
        for f in found:
            click.echo(f"{f.level:<5} {f.check}: {f.detail}")
            if f.fix:
                click.echo(f"      {'fix' if f.problem else 'hint'}: {f.fix}")
        problems = sum(f.problem for f in found)
        click.echo(f"{problems} problem{'s' if problems != 1 else ''} found")
    ctx.exit(code)
