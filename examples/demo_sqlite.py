"""mneme on its embedded default: a SQLite file, an exact hit, a semantic hit, a miss."""

from __future__ import annotations

import os
import tempfile

from mneme import SemanticCache
from mneme.testing import HashingEmbedder


def show(label: str, query: str, cache: SemanticCache) -> None:
    hit = cache.get(query)
    if hit is None:
        print(f"{label:<13} {query!r:<45} -> miss")
    else:
        print(
            f"{label:<13} {query!r:<45} -> {hit.response!r} "
            f"({hit.layer}, similarity {hit.similarity:.3f})"
        )


def main() -> None:
    path = os.path.join(tempfile.mkdtemp(prefix="mneme-demo-"), "cache.db")
    # HashingEmbedder needs no model: texts sharing words and trigrams land close.
    with SemanticCache(path, HashingEmbedder(dim=384), similarity_threshold=0.8) as cache:
        cache.put("What is the capital of France?", "Paris is the capital of France.")
        cache.put("How many legs does a spider have?", "Eight.")

        show("exact hit", "  what is the CAPITAL of France? ", cache)
        show("semantic hit", "What is the capital city of France?", cache)
        show("miss", "Who wrote War and Peace?", cache)

        s = cache.stats()
        print(
            f"\nstats: {s.entries} entries, {s.hits_exact} exact hits, "
            f"{s.hits_semantic} semantic hits, {s.misses} misses"
        )
        h = cache.health()
        print(f"store: {h.store_backend} at {path}, index: {h.index_backend}, healthy: {h.healthy}")


if __name__ == "__main__":
    main()
