"""The README's quickstart must run as written and show what it says it shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _quickstart() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README has no python block under Quickstart"
    return match.group(1)


def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    code = _quickstart()
    assert len(code.strip().splitlines()) <= 12
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=True,
    ).stdout.splitlines()
    assert "layer='exact'" in out[0]
    assert "layer='semantic'" in out[1]
    assert "checks_passed=('numbers', 'negation', 'entities', 'code', 'comparison')" in out[1]
    assert out[2] == "None"
    assert out[3] == "None"
    assert "hits_exact=1, hits_semantic=1, misses=2" in out[4]
    assert "refusals={'numbers': 1}" in out[4]
    assert "fingerprint='mneme.embedders.MiniLM(" in out[4], "the real embedder ran"
    assert (tmp_path / "cache.db").exists()


def test_sqlite_demo_shows_exact_semantic_miss_and_stats() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo_sqlite.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert out.startswith("embedder: all-MiniLM-L6-v2")
    assert re.search(r"^exact hit .*\(exact, similarity 1\.000\)$", out, re.M)
    assert re.search(r"^semantic hit .*\(semantic, similarity 0\.\d+\)$", out, re.M)
    assert re.search(r"^miss .*-> miss$", out, re.M)
    assert re.search(r"^near miss .*9:45.*-> miss$", out, re.M)
    assert "1 exact hits, 1 semantic hits, 2 misses" in out
    assert "(near misses refused: 1 by the numbers check)" in out


def test_demo_falls_back_to_the_test_embedder_and_says_so() -> None:
    code = (
        "import runpy, sys\nsys.modules['onnxruntime'] = None\n"
        f"runpy.run_path({str(ROOT / 'examples' / 'demo_sqlite.py')!r}, run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "'minilm' extra" in done.stderr and "HashingEmbedder instead" in done.stderr
    assert done.stdout.startswith("embedder: mneme.testing.HashingEmbedder")
    assert "1 exact hits, 1 semantic hits, 2 misses" in done.stdout
