"""Generate the sync twin of each async module, so the pair has one source.

The async file is the one to edit. Its sync copy is made by rewriting the text: the
``async``/``await`` keywords go, async names become their sync names (``NAMES``), and
three kinds of marker say where the two differ:

* a line ending in ``# async-only`` is dropped;
* lines between ``# async-only: begin`` and ``# async-only: end`` are dropped;
* a comment line ``# sync: <code>`` becomes ``<code>`` at the same indentation.

The result is put through ``ruff check --fix`` (imports) and ``ruff format``, so it
reads as if written by hand. ``make generate`` writes the sync files; ``make lint``
runs this with ``--check`` and fails when a sync file is stale.

This is the approach psycopg takes with its tools/async_to_sync.py, done on text
rather than on the syntax tree so that comments survive.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "src" / "mneme"
PG = PKG / "stores" / "postgres"

# (async source, generated sync file)
PAIRS = [
    (PKG / "stores" / "async_protocol.py", PKG / "stores" / "protocol.py"),
    (PKG / "cache" / "async_cache.py", PKG / "cache" / "sync_cache.py"),
    (PG / "async_connection.py", PG / "connection.py"),
    (PG / "async_store.py", PG / "store.py"),
]

# Whole words, async name -> sync name.
NAMES = {
    "AbstractAsyncContextManager": "AbstractContextManager",
    "AsyncCallerConnection": "CallerConnection",
    "AsyncBatchStore": "BatchStore",
    "AsyncChangeTrackingStore": "ChangeTrackingStore",
    "AsyncConnection": "Connection",
    "AsyncConnectionPool": "ConnectionPool",
    "AsyncConnectionSource": "ConnectionSource",
    "AsyncCounterBatchStore": "CounterBatchStore",
    "AsyncChunkedInsertStore": "ChunkedInsertStore",
    "AsyncGenerator": "Generator",
    "AsyncIterable": "Iterable",
    "AsyncIterator": "Iterator",
    "AsyncLibpqWriter": "LibpqWriter",
    "AsyncLookupStore": "LookupStore",
    "AsyncOwnedConnection": "OwnedConnection",
    "AsyncPoolConnection": "PoolConnection",
    "AsyncPostgresStore": "PostgresStore",
    "AsyncSemanticCache": "SemanticCache",
    "AsyncStore": "Store",
    "AsyncVectorSearchStore": "VectorSearchStore",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "aclose": "close",
    "async_cache": "sync_cache",
    "async_connection": "connection",
    "async_store": "store",
    "asynccontextmanager": "contextmanager",
}

_WORDS = re.compile(r"\b(" + "|".join(sorted(NAMES, key=len, reverse=True)) + r")\b")
_KEYWORDS = re.compile(r"\basync (def|with|for)\b")
_AWAIT = re.compile(r"\bawait ")
_SYNC_LINE = re.compile(r"^(\s*)# sync: ?(.*)$")


def to_sync(text: str, source: Path) -> str:
    out: list[str] = []
    skipping = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == "# async-only: begin":
            skipping = True
            continue
        if stripped == "# async-only: end":
            skipping = False
            continue
        if skipping or line.rstrip().endswith("# async-only"):
            continue
        match = _SYNC_LINE.match(line)
        if match:
            out.append(match.group(1) + match.group(2))
            continue
        line = _KEYWORDS.sub(r"\1", line)
        line = _AWAIT.sub("", line)
        out.append(_WORDS.sub(lambda m: NAMES[m.group(1)], line))
    if skipping:
        raise SystemExit(f"{source}: '# async-only: begin' without an end")
    header = (
        f"# Generated from {source.name} by scripts/unasync.py: edit that file, then run\n"
        "# `make generate`. `make lint` fails when this file is stale.\n"
    )
    return _ruff(header + "\n".join(out) + "\n")


def _ruff(text: str) -> str:
    ruff = Path(sys.executable).parent / "ruff"
    for args in (["check", "--fix", "--exit-zero", "--quiet"], ["format"]):
        done = subprocess.run(
            [str(ruff), *args, "--stdin-filename", str(PKG / "generated.py"), "-"],
            input=text,
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        text = done.stdout
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a sync file is stale")
    args = parser.parse_args()
    stale = []
    for source, target in PAIRS:
        wanted = to_sync(source.read_text("utf-8"), source)
        current = target.read_text("utf-8") if target.exists() else ""
        if wanted == current:
            continue
        if args.check:
            stale.append(target)
            diff = difflib.unified_diff(
                current.splitlines(), wanted.splitlines(), str(target), "generated", lineterm=""
            )
            print("\n".join(list(diff)[:40]), file=sys.stderr)
        else:
            target.write_text(wanted, "utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        names = ", ".join(str(t.relative_to(ROOT)) for t in stale)
        print(f"stale generated files: {names}; run `make generate`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
