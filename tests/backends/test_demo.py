"""``make demo``'s script, run end to end: an embedded PostgreSQL with pgvector, a
semantic hit answered by pgvector, a second process that sees the first one's write
at once (and the other way round), ``mneme stats``, and nothing left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.backend("pgvector")
def test_demo_shows_the_main_job_and_cleans_up() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^embedder: (HashingEmbedder|mneme\.embedders\.MiniLM)", out, re.M)
    assert "store: postgres, Layer 2 answered by: pgvector" in out
    assert re.search(r"^process 1 get .*-> 'Paris\.' \(exact, similarity 1\.000\)$", out, re.M)
    assert re.search(r"^process 1 get .*-> 'Paris\.' \(semantic, similarity 0\.\d+\)$", out, re.M)
    assert re.search(r"^process 1 get 'Who wrote War and Peace\?' +-> miss$", out, re.M)
    # The second process finds what the first wrote, and the first what the second wrote.
    assert re.search(r"^process 2 get .*-> 'Eight\.' \(semantic, similarity 0\.\d+\)$", out, re.M)
    assert re.search(r"^process 1 get .*-> '100 degrees Celsius at sea level\.'", out, re.M)
    stats = out.split("$ mneme stats\n", 1)[1]
    assert "schema mneme_demo" in stats and "Layer 2: pgvector hnsw" in stats
    assert re.search(r"^\(all\) +3 +1 +3 +1 +0 +0$", stats, re.M)
    match = re.search(r"host=(/\S+)/pgdata", stats)
    assert match is not None
    assert not Path(match.group(1)).exists()
    assert out.rstrip().endswith("stopped the server and deleted its files: nothing left behind")


def _normalised(text: str) -> list[str]:
    """Demo output without what changes from run to run: times, pids, temp paths."""
    text = re.sub(r"\d+(\.\d+)? (s|ms)\b", "N \\2", text)
    text = re.sub(r"pid \d+", "pid N", text)
    text = re.sub(r"mneme-demo-[^/]+", "mneme-demo-X", text)
    return [line.rstrip() for line in text.strip().splitlines()]


@pytest.mark.backend("pgvector")
def test_readme_shows_what_the_demo_prints() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## See it", 1)[1]
    match = re.search(r"```text\n(.*?)```", section, re.S)
    assert match is not None, "README's 'See it' has no text block"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
        env={**os.environ, "MNEME_DEMO_EMBEDDER": "hashing"},  # what the README shows
    )
    assert _normalised(match.group(1)) == _normalised(result.stdout)
