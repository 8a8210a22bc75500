"""The ``mneme`` command: look after a cache without writing Python.

``main`` is the console script. click comes with the ``cli`` extra; without it the
command says which extra to install instead of failing on an import.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from mneme.cli.app import main as run
    except ImportError as exc:
        if getattr(exc, "name", None) != "click":
            raise
        print(
            "mneme: error: the mneme command needs the 'cli' extra: "
            "pip install 'mneme-semantic-cache[cli]'",
            file=sys.stderr,
        )
        return 2
    return run(argv)


def console() -> None:
    sys.exit(main())
