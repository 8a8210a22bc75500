"""The client's share of a direct load: what it makes of a chunk before the server needs it.

A direct load (``PgCore._op_direct``) writes each chunk as two COPYs, its entries and
then their side rows. A binary COPY of 1,000 rows is stored by the server after its
last row has arrived, so each COPY ends with the server busy and the client free. The
load fills those two waits with the client's work on what comes next:

- while the server stores chunk *n*'s entries: take chunk *n + 1* from the caller (for
  ``put_many``, that is where the cache prepares its entries) and encode chunk *n*'s
  side rows;
- while it stores chunk *n*'s side rows: chunk *n + 1*'s metadata as JSON, its side
  vectors, and its entry rows (its ids were taken in the round trip between the COPYs).

The next COPY then only sends bytes that are ready.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mneme._types import StoredEntry
from mneme.stores.postgres.copy_rows import Vectors, entry_rows, side_rows
from mneme.stores.postgres.vector import side_vectors

__all__ = ["DirectChunk"]


class DirectChunk:
    """One chunk of a direct load and its COPY data, made in the steps above."""

    def __init__(
        self, entries: Sequence[StoredEntry], dim: int, to_json: Callable[[Any], str | None]
    ) -> None:
        self.entries = entries
        self._dim = dim
        self._to_json = to_json  # an entry's metadata as JSON text, None for none
        self._sides: Vectors | None = None
        self.ids: list[int] = []
        self.entry_data: list[bytes] = []
        self.side_data: list[bytes] = []

    def encode_entries(self, ids: Sequence[int]) -> None:
        """The entry rows' COPY data, under ``ids`` (one per entry, in order), and the
        side vectors the side rows are made of."""
        metadata = [self._to_json(e.metadata) for e in self.entries]
        self._sides = side_vectors([e.embedding for e in self.entries], self._dim)
        self.ids = list(ids)
        self.entry_data = list(entry_rows(self.entries, self.ids, metadata))

    def encode_sides(self) -> None:
        """The side rows' COPY data (after ``encode_entries``)."""
        assert self._sides is not None
        self.side_data = list(side_rows(self.entries, self.ids, self._sides, self._dim))
