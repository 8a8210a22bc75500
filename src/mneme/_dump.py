"""Portable dumps: one JSON header line, then one JSON line per entry (embedding as
base64 of little-endian float32). Works across stores and machines."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Iterator

from ._errors import CheckpointError, EmbedderDimensionError, EmbedderMismatchError
from ._types import StoredEntry

FORMAT = "mneme-dump"
VERSION = 1


def write_dump(dest: str, fingerprint: str, dim: int, entries: Iterable[StoredEntry]) -> int:
    tmp = f"{dest}.tmp"
    count = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as out:
        header = {"format": FORMAT, "version": VERSION, "fingerprint": fingerprint, "dim": dim}
        out.write(json.dumps(header) + "\n")
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
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    os.replace(tmp, dest)
    return count


def read_dump(
    source: str, fingerprint: str, dim: int
) -> tuple[dict[str, object], Iterator[StoredEntry]]:
    """Check the header against the embedder, then stream the entries."""
    try:
        with open(source, encoding="utf-8") as f:
            header = json.loads(f.readline())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read mneme dump {source!r}: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{source!r} is not a mneme dump")
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
