"""Running the real ``mneme`` console script in a subprocess, and filling targets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mneme import SemanticCache
from mneme.stores.postgres.store import PostgresStore
from mneme.testing import HashingEmbedder

EMBEDDER = HashingEmbedder(dim=64)
MNEME = Path(sys.executable).with_name("mneme")


def mneme(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> Any:
    """Run ``mneme args...``; the CompletedProcess (text), whatever the exit code."""
    assert MNEME.exists(), f"the console script is not installed at {MNEME}"
    return subprocess.run(
        [str(MNEME), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "error", **(env or {})},
        check=False,
    )


def popen(*args: str) -> subprocess.Popen[str]:
    """``mneme args...`` started, stderr piped (progress lines), for interrupting."""
    return subprocess.Popen(
        [str(MNEME), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )


def items(n: int, namespace: str = "default") -> list[dict[str, Any]]:
    return [
        {
            "query": f"question {i} about topic {i % 17}",
            "response": f"answer {i}",
            "namespace": namespace,
        }
        for i in range(n)
    ]


def fill_sqlite(path: str, n: int = 30) -> None:
    with SemanticCache(path, EMBEDDER, similarity_threshold=0.8) as cache:
        _fill(cache, n)


def fill_postgres(dsn: str, schema: str, n: int = 30, **options: Any) -> None:
    store = PostgresStore(dsn, schema=schema, **options)
    with SemanticCache(store=store, embedder=EMBEDDER, similarity_threshold=0.8) as cache:
        _fill(cache, n)


def _fill(cache: SemanticCache, n: int) -> None:
    cache.put_many(items(n))
    cache.put("hello there", "hi", namespace="greetings")
    if n < 3:
        return
    assert cache.get("question 1 about topic 1") is not None  # exact hit
    assert cache.get("Question 2 about topic 2!") is not None  # semantic hit
    assert cache.get("something else entirely") is None  # miss
