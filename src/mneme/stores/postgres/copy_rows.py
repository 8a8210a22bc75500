"""The rows of a bulk load, encoded in COPY's binary format by the store.

psycopg's ``Copy.write_row`` adapts every value through its dumpers, on the thread
that holds the connection. The tables a load writes have fixed column types, so the
store writes the wire format itself: a row is a field count, then each field as a
length (-1 for NULL) and its bytes, integers big-endian.

Two shapes: rows for the session's staging table (``staged_rows``: plain bytes, so the
next chunk can be encoded while the server upserts the previous one, see
``PgCore._op_staged``), and rows that go straight into ``entries`` and the side table
(``entry_rows``, ``side_rows``: in pieces of a few dozen rows, made while the server
stores the rows of the COPY before, see ``direct``).

The ``vector`` field is pgvector's binary form: dimension and an unused word (both
int16), then the float4 values big-endian. ``jsonb``'s is a version byte (1), then the
JSON text.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from mneme._types import StoredEntry

__all__ = ["SIGNATURE", "entry_rows", "side_rows", "staged_rows"]

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
"""The header a binary COPY starts with (signature, flags, extension length)."""

_LEN = struct.Struct(">i").pack
_INT8 = struct.Struct(">iq").pack  # length 8, then the value
_NULL = _LEN(-1)
_JSONB = b"\x01"
# Rows per piece of a direct load (~0.4 MB at dim 1536): COPY data is written piece by
# piece, never joined into one buffer of the whole chunk.
_PIECE = 64

Vectors = Sequence[npt.NDArray[np.float32] | None]


def _entry_fields(e: StoredEntry, meta: bytes | None) -> tuple[bytes, ...]:
    """The entry columns from namespace to access_count (``STAGE_COLUMNS``' order)."""
    ns, qh, q, resp = (
        e.namespace.encode(),
        e.query_hash.encode(),
        e.query.encode(),
        e.response.encode(),
    )
    return (
        _LEN(len(ns)),
        ns,
        _LEN(len(qh)),
        qh,
        _LEN(len(q)),
        q,
        _LEN(len(resp)),
        resp,
        _LEN(len(e.embedding)),
        e.embedding,
        _NULL if meta is None else _LEN(len(meta)) + meta,
        _INT8(8, e.created_at),
        _INT8(8, e.last_accessed_at),
        _NULL if e.ttl is None else _INT8(8, e.ttl),
        _INT8(8, e.access_count),
    )


def staged_rows(
    entries: Sequence[StoredEntry],
    metadata: Sequence[str | None],
    sides: Vectors | None,
    dim: int,
    first_ord: int,
) -> bytes:
    """COPY data (with its header) for the staging columns: the entry columns in the
    order of ``STAGE_COLUMNS``, metadata as JSON text, then the side vector when
    ``sides`` is given, then ``ord`` (``first_ord`` onwards)."""
    count = struct.pack(">h", 12 if sides is not None else 11)  # fields per row
    vector_field = _vector_field(dim)
    parts: list[bytes] = [SIGNATURE]
    for n, e in enumerate(entries):
        meta = metadata[n]
        parts.append(count)
        parts.extend(_entry_fields(e, None if meta is None else meta.encode()))
        if sides is not None:
            parts.append(vector_field(sides[n]))
        parts.append(_INT8(8, first_ord + n))
    return b"".join(parts)


def entry_rows(
    entries: Sequence[StoredEntry], ids: Sequence[int], metadata: Sequence[str | None]
) -> Iterator[bytes]:
    """COPY data for ``entries`` as rows of the entries table (``COLUMNS``' order:
    the id, then the rest; metadata as jsonb), in pieces, the header first."""
    count = struct.pack(">h", 11)
    yield SIGNATURE
    for lo in range(0, len(entries), _PIECE):
        parts: list[bytes] = []
        for n in range(lo, min(lo + _PIECE, len(entries))):
            meta = metadata[n]
            parts.append(count)
            parts.append(_INT8(8, ids[n]))
            parts.extend(
                _entry_fields(entries[n], None if meta is None else _JSONB + meta.encode())
            )
        yield b"".join(parts)


def side_rows(
    entries: Sequence[StoredEntry], ids: Sequence[int], sides: Vectors, dim: int
) -> Iterator[bytes]:
    """COPY data for the side rows of ``entries`` (id, namespace, expires_at, vector),
    namespace by namespace (an exact scan of a small namespace then reads a few heap
    pages, not one per row), in pieces, the header first."""
    count = struct.pack(">h", 4)
    vector_field = _vector_field(dim)
    order = sorted(range(len(entries)), key=lambda n: (entries[n].namespace, ids[n]))
    yield SIGNATURE
    for lo in range(0, len(order), _PIECE):
        parts: list[bytes] = []
        for n in order[lo : lo + _PIECE]:
            e = entries[n]
            ns = e.namespace.encode()
            parts.extend(
                (
                    count,
                    _INT8(8, ids[n]),
                    _LEN(len(ns)),
                    ns,
                    _NULL if e.ttl is None else _INT8(8, e.created_at + e.ttl),
                    vector_field(sides[n]),
                )
            )
        yield b"".join(parts)


def _vector_field(dim: int) -> Callable[[npt.NDArray[np.float32] | None], bytes]:
    head = _LEN(4 + 4 * dim) + struct.pack(">hh", dim, 0)

    def field(vector: npt.NDArray[np.float32] | None) -> bytes:
        if vector is None:
            return _NULL
        return head + vector.astype(">f4").tobytes()

    return field
