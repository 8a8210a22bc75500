"""Portable dumps: one JSON header line, then one JSON line per entry (embedding as
base64 of little-endian float32). Works across stores and machines."""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Iterable, Iterator

from mneme._errors import CheckpointError, EmbedderDimensionError, EmbedderMismatchError
from mneme._types import StoredEntry

FORMAT = "mneme-dump"
VERSION = 1


class DumpWriter:
    """Writes a dump to ``dest`` atomically: rows go to ``dest.tmp``, which replaces
    ``dest`` only when the writer closes without an error."""

    def __init__(self, dest: str, fingerprint: str, dim: int) -> None:
        self._dest = dest
        self._tmp = f"{dest}.tmp"
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._out = open(fd, "w", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        header = {"format": FORMAT, "version": VERSION, "fingerprint": fingerprint, "dim": dim}
        self._out.write(json.dumps(header) + "\n")
        self.count = 0

    def write(self, entries: Iterable[StoredEntry]) -> None:
        for e in entries:
            row = {
                "namespace": e.namespace,
                "query_hash": e.query_hash,
                "query": e.query,
                "response": e.response,
                "embedding": base64.b64encode(e.embedding).decode("ascii"),
                "metadata": e.metadata,
                "created_at": e.created_at,
                "last_accessed_at": e.last_accessed_at,
                "ttl": e.ttl,
                "access_count": e.access_count,
            }
            self._out.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.count += 1

    def __enter__(self) -> DumpWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._out.close()
        if exc_type is None:
            os.replace(self._tmp, self._dest)
        else:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)


def write_dump(dest: str, fingerprint: str, dim: int, entries: Iterable[StoredEntry]) -> int:
    with DumpWriter(dest, fingerprint, dim) as out:
        out.write(entries)
    return out.count


def read_header(source: str) -> dict[str, object]:
    """The header of a dump (format, version, fingerprint, dim), checked to be one."""
    try:
        with open(source, encoding="utf-8") as f:
            header = json.loads(f.readline())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read mneme dump {source!r}: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{source!r} is not a mneme dump")
    if not isinstance(header.get("fingerprint"), str) or not isinstance(header.get("dim"), int):
        raise CheckpointError(f"{source!r}: the dump header names no embedder fingerprint and dim")
    return header


def count_rows(source: str) -> int:
    """How many entries a dump holds (one line each after the header)."""
    with open(source, "rb") as f:
        return max(sum(1 for line in f if line.strip()) - 1, 0)


def read_dump(
    source: str, fingerprint: str, dim: int
) -> tuple[dict[str, object], Iterator[StoredEntry]]:
    """Check the header against the embedder, then stream the entries."""
    header = read_header(source)
    if header.get("fingerprint") != fingerprint:
        raise EmbedderMismatchError(
            f"dump {source!r} was written with embedder {header.get('fingerprint')!r}, not "
            f"{fingerprint!r}; load it with that embedder, then reembed with mneme.tools.migrate"
        )
    if header.get("dim") != dim:
        raise EmbedderDimensionError(
            f"dump {source!r} has dim {header.get('dim')}, not {dim}; reembed"
        )

    def rows() -> Iterator[StoredEntry]:
        with open(source, encoding="utf-8") as f:
            f.readline()
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                yield StoredEntry(
                    id=0,
                    namespace=r["namespace"],
                    query_hash=r["query_hash"],
                    query=r["query"],
                    response=r["response"],
                    embedding=base64.b64decode(r["embedding"]),
                    metadata=r["metadata"],
                    created_at=int(r["created_at"]),
                    last_accessed_at=int(r["last_accessed_at"]),
                    ttl=r["ttl"],
                    access_count=int(r["access_count"]),
                )

    return header, rows()
