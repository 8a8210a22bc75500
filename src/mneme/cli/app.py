"""The ``mneme`` command group: shared options, and how errors become exit codes.

Exit codes: 0 done; 1 the operation failed or ``doctor`` found problems; 2 bad usage
or a target that cannot be used (unparsable DSN, server down, no cache there);
130 interrupted (Ctrl-C), with nothing half-written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from mneme._errors import MnemeError
from mneme._version import __version__
from mneme.cli.target import Target, TargetError, parse_target

__all__ = ["cli", "examples", "main", "target_arguments"]

_F = TypeVar("_F", bound=Callable[..., Any])

EXIT_FAILED = 1
EXIT_BAD_TARGET = 2
EXIT_INTERRUPTED = 130

_masks: list[Target] = []


def examples(*lines: str) -> str:
    """A help epilog of example invocations, kept as written (``\\b`` stops rewrapping)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def target_arguments(f: _F) -> _F:
    """TARGET (a SQLite path or a Postgres DSN, or $MNEME_TARGET) and --schema."""
    f = click.option(
        "--schema",
        default="mneme",
        show_default=True,
        envvar="MNEME_SCHEMA",
        help="Postgres schema of the cache (ignored for a SQLite file).",
    )(f)
    return click.argument("target", envvar="MNEME_TARGET")(f)


def resolve(target: str, schema: str) -> Target:
    """Parse the target and remember its password so no message can show it."""
    parsed = parse_target(target, schema)
    _masks.append(parsed)
    return parsed


def _masked(text: str) -> str:
    """One line, no password."""
    from mneme.stores.postgres.dsn import mask_dsn

    for target in _masks:
        text = target.mask(text)
    return " ".join(mask_dsn(text).split())


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=examples(
        "mneme stats cache.db",
        "mneme doctor postgresql://app@db.internal/app --schema mneme",
        "MNEME_TARGET=postgresql://app@db/app mneme upgrade --pgvector",
    ),
)
@click.version_option(__version__, prog_name="mneme")
def cli() -> None:
    """Look after a mneme cache: a SQLite file, or a Postgres schema (DSN + --schema).

    TARGET may also come from $MNEME_TARGET, which keeps a password off the command
    line; a password is never printed.
    """


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; errors print one line on stderr and set the exit code."""
    from mneme.cli import commands  # noqa: F401 - registers the subcommands

    try:
        args = list(argv) if argv is not None else None
        code = cli.main(args=args, prog_name="mneme", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo(
            "mneme: interrupted; what was committed is whole, nothing is half-written. "
            "Run the same command again to finish.",
            err=True,
        )
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except TargetError as exc:
        click.echo(f"mneme: error: {_masked(str(exc))}", err=True)
        return EXIT_BAD_TARGET
    except (MnemeError, ValueError, OSError) as exc:
        click.echo(f"mneme: error: {_masked(str(exc))}", err=True)
        return EXIT_FAILED
    return code if isinstance(code, int) else 0
