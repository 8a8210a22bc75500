"""docs/cli.md shows what the commands print: the transcript script, run afresh in
``--check`` mode, finds no difference beyond times and rates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.backend("pgvector")
def test_docs_cli_matches_a_fresh_run(postgres_dsn: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "cli_transcript.py"),
            "--check",
            "--dsn",
            postgres_dsn,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
