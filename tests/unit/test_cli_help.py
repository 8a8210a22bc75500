"""Every ``mneme`` command's --help shows an example; bad usage exits 2 (no server)."""

from __future__ import annotations

import pytest

from cli_helpers import mneme

COMMANDS = [
    "stats",
    "namespaces",
    "doctor",
    "upgrade",
    "reindex",
    "rebuild-index",
    "export",
    "import",
    "calibrate",
    "bench",
]


def test_the_group_lists_every_command() -> None:
    result = mneme("--help")
    assert result.returncode == 0
    listed = {line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines()[1:11]}
    assert listed == set(COMMANDS)
    assert "Examples:" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_an_example(command: str) -> None:
    result = mneme(command, "--help")
    assert result.returncode == 0, result.stderr
    examples = result.stdout.split("Examples:", 1)[1].strip().splitlines()
    # Each example runs this command (reindex and rebuild-index name each other).
    alias = {"reindex", "rebuild-index"}
    names = alias if command in alias else {command}
    assert examples
    for line in examples:
        words = line.split()
        assert "mneme" in words and words[words.index("mneme") + 1] in names


def test_a_missing_target_is_a_usage_error() -> None:
    result = mneme("stats", env={"MNEME_TARGET": ""})
    assert result.returncode == 2
    assert "Missing argument 'TARGET'" in result.stderr


def test_version() -> None:
    from mneme import __version__

    assert mneme("--version").stdout.strip() == f"mneme, version {__version__}"
