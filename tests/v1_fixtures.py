"""The mneme 1.0 fixtures in ``tests/fixtures/v1`` and what they hold.

Their entries were written at one moment; a cache reading them runs on a clock pinned a
minute after it, since the default confidence halves with every day of an entry's age
and a semantic hit on a fixture entry would otherwise stop being served some hours
after the fixtures were made.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from mneme.testing import HashingEmbedder

V1 = Path(__file__).resolve().parent / "fixtures" / "v1"
EXPECTED: dict[str, Any] = json.loads((V1 / "expected.json").read_text(encoding="utf-8"))
EMBEDDER = HashingEmbedder(dim=EXPECTED["embedder_dim"])


def _written_at() -> int:
    conn = sqlite3.connect(f"file:{V1 / 'cache.db'}?mode=ro", uri=True)
    try:
        (latest,) = conn.execute("SELECT max(created_at) FROM entries").fetchone()
    finally:
        conn.close()
    return int(latest)


WRITTEN_AT = _written_at()


def a_minute_after_writing() -> float:
    """A cache clock: the fixtures' expired entry has expired, the rest are fresh."""
    return float(WRITTEN_AT + 60)
