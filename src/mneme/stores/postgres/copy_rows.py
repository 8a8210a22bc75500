"""The staging rows of a bulk load, encoded in COPY's binary format by the store.

psycopg's ``Copy.write_row`` adapts every value through its dumpers, on the thread
that holds the connection. The staging table has fixed column types, so the store
writes the wire format itself: a row is a field count, then each field as a length
(-1 for NULL) and its bytes, integers big-endian. The result is plain bytes, so
the next chunk can be encoded while the server is still upserting the previous one
(see ``PgCore._op_staged``) and then sent in one write.

The ``vector`` field is pgvector's binary form: dimension and an unused word (both
int16), then the float4 values big-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from mneme._types import StoredEntry

__all__ = ["SIGNATURE", "staged_rows"]

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
"""The header a binary COPY starts with (signature, flags, extension length)."""

_LEN = struct.Struct(">i").pack
_INT8 = struct.Struct(">iq").pack  # length 8, then the value
_NULL = _LEN(-1)


def staged_rows(
    entries: Sequence[StoredEntry],
    metadata: Sequence[str | None],
    sides: Sequence[npt.NDArray[np.float32] | None] | None,
    dim: int,
    first_ord: int,
) -> bytes:
    """COPY data (with its header) for the staging columns: the entry columns in the
    order of ``STAGE_COLUMNS``, metadata as JSON text, then the side vector when
    ``sides`` is given, then ``ord`` (``first_ord`` onwards)."""
    count = struct.pack(">h", 12 if sides is not None else 11)  # fields per row
    vector_field = _vector_field(dim)
    parts: list[bytes] = [SIGNATURE]
    add = parts.extend
    for n, e in enumerate(entries):
        ns, qh, q, resp = (
            e.namespace.encode(),
            e.query_hash.encode(),
            e.query.encode(),
            e.response.encode(),
        )
        meta = metadata[n]
        meta_b = None if meta is None else meta.encode()
        add(
            (
                count,
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
                _NULL if meta_b is None else _LEN(len(meta_b)) + meta_b,
                _INT8(8, e.created_at),
                _INT8(8, e.last_accessed_at),
                _NULL if e.ttl is None else _INT8(8, e.ttl),
                _INT8(8, e.access_count),
            )
        )
        if sides is not None:
            parts.append(vector_field(sides[n]))
        parts.append(_INT8(8, first_ord + n))
    return b"".join(parts)


def _vector_field(dim: int) -> Callable[[npt.NDArray[np.float32] | None], bytes]:
    head = _LEN(4 + 4 * dim) + struct.pack(">hh", dim, 0)

    def field(vector: npt.NDArray[np.float32] | None) -> bytes:
        if vector is None:
            return _NULL
        return head + vector.astype(">f4").tobytes()

    return field
