"""``python -m mneme.cli``: the same as the ``mneme`` command."""

from mneme.cli import console

console()
