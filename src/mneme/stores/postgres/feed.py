"""The entries of a bulk load that arrive while the store writes the ones before."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from mneme._types import StoredEntry
from mneme.stores.common import dedupe_batch


class ChunkFeed:
    """Chunks of at most ``size`` entries, each free of duplicate keys, taken from
    ``source`` only when the store asks for the next one.

    Whatever ``source`` raises while making a chunk reaches the store inside its
    transaction, which then stores nothing. Chunks already taken are kept: a
    transaction the server aborted (a deadlock) is tried again from the first chunk.
    """

    def __init__(self, source: Iterable[Sequence[StoredEntry]], size: int) -> None:
        self._source = iter(source)
        self._size = size
        self._waiting: list[StoredEntry] = []
        self._chunks: list[list[StoredEntry]] = []
        self._exhausted = False
        self.entries: list[StoredEntry] = []
        """Every entry taken, as given (duplicates included), in order."""

    def __iter__(self) -> Iterator[list[StoredEntry]]:
        n = 0
        while n < len(self._chunks) or self._take():
            yield self._chunks[n]
            n += 1

    def _take(self) -> bool:
        """Make the next chunk; False when ``source`` has no more entries."""
        while len(self._waiting) < self._size and not self._exhausted:
            got = next(self._source, None)
            if got is None:
                self._exhausted = True
            else:
                self._waiting.extend(got)
                self.entries.extend(got)
        if not self._waiting:
            return False
        chunk = self._waiting[: self._size]
        del self._waiting[: self._size]
        # One upsert cannot write a row twice; a later chunk may overwrite an earlier one.
        self._chunks.append(dedupe_batch(chunk))
        return True
