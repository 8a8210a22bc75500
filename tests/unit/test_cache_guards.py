"""Near-miss guards in the cache: a candidate above the threshold whose question differs
in a number, a negation, a name, an identifier or a direction is not served; the next
candidate may be; refusals are counted by check in Stats and reported to the metrics
hook; ``Hit.checks_passed`` says which checks a semantic hit passed; ``guards=``
chooses the checks. TableEmbedder places the questions at chosen cosines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cache_helpers import Events, run
from mneme import AsyncSemanticCache, MemoryStore, SemanticCache
from mneme.guards import CHECK_NAMES, NearMissGuards
from mneme.testing import TableEmbedder

Q = "Is the 9:15 train to Leeds on time?"
TRAP = "Is the 9:45 train to Leeds on time?"  # cosine 0.97 with Q
PARAPHRASE = "Is the 9:15 service to Leeds running on time?"  # cosine 0.93
NEGATED = "Is the 9:15 train to Leeds not on time?"  # cosine 0.96
FAR = "How do I bake bread?"


def _embedder() -> TableEmbedder:
    def at(c: float) -> list[float]:
        return [c, (1 - c * c) ** 0.5, 0.0]

    table: dict[str, list[float]] = {
        Q: [1.0, 0.0, 0.0],
        TRAP: at(0.97),
        PARAPHRASE: at(0.93),
        NEGATED: at(0.96),
        FAR: [0.0, 0.0, 1.0],
    }
    # The cache embeds the normalised query; the checks read the caller's text.
    return TableEmbedder({text.casefold(): v for text, v in table.items()}, dim=3)


def _cache(**kwargs: Any) -> SemanticCache:
    return SemanticCache(store=MemoryStore(), embedder=_embedder(), **kwargs)


def test_a_trap_above_the_threshold_is_refused_and_counted() -> None:
    events = Events()
    with _cache(metrics_hook=events) as cache:
        cache.put(TRAP, "It is late.")
        assert cache.get(Q) is None
        stats = cache.stats()
        assert stats.refusals == {"numbers": 1}
        assert (stats.misses, stats.hits_semantic) == (1, 0)
        assert events.of("refused") == [
            {"namespace": "default", "check": "numbers", "similarity": pytest.approx(0.97)}
        ]
        assert events.miss_reasons() == ["refused"]


def test_the_next_candidate_is_served_with_the_checks_it_passed() -> None:
    with _cache() as cache:
        cache.put(TRAP, "It is late.")
        cache.put(NEGATED, "No, it is late.")
        cache.put(PARAPHRASE, "Yes, on time.")
        hit = cache.get(Q)
        assert hit is not None and hit.response == "Yes, on time."
        assert hit.similarity == pytest.approx(0.93)
        assert hit.checks_passed == CHECK_NAMES
        assert cache.stats().refusals == {"negation": 1, "numbers": 1}
        exact = cache.get(TRAP)  # the exact layer runs no checks
        assert exact is not None and exact.checks_passed == ()


def test_guards_off_or_chosen() -> None:
    with _cache(guards=False) as cache:
        cache.put(TRAP, "It is late.")
        hit = cache.get(Q)
        assert hit is not None and hit.checks_passed == ()
        assert cache.stats().refusals == {}
    with _cache(guards=["negation", "entities"]) as cache:
        cache.put(TRAP, "It is late.")
        cache.put(NEGATED, "No, it is late.")
        hit = cache.get(Q)
        assert hit is not None and hit.response == "It is late."
        assert hit.checks_passed == ("negation", "entities")
    custom = NearMissGuards(["numbers"], extra={"late": lambda q, c: "late" in q})
    with _cache(guards=custom) as cache:
        cache.put(PARAPHRASE, "Yes, on time.")
        hit = cache.get(Q)
        assert hit is not None and hit.checks_passed == ("numbers", "late")


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (["spelling"], ValueError, "unknown near-miss check"),
        ("numbers", TypeError, "guards must be"),
        (3, TypeError, "guards must be"),
    ],
)
def test_bad_guards_argument(value: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        _cache(guards=value)


def test_get_many_applies_the_checks() -> None:
    with _cache() as cache:
        cache.put(TRAP, "It is late.")
        refused, exact, far = cache.get_many([Q, TRAP, FAR])
        assert refused is None and far is None
        assert exact is not None and exact.layer == "exact"
        assert cache.stats().refusals == {"numbers": 1}


def test_refusal_counts_survive_a_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    with SemanticCache(path, _embedder()) as cache:
        cache.put(TRAP, "It is late.", namespace="rail")
        for _ in range(3):
            assert cache.get(Q, namespace="rail") is None
    with SemanticCache(path, _embedder()) as cache:
        assert cache.stats().refusals == {"numbers": 3}
        assert cache.stats(namespace="rail").refusals == {"numbers": 3}
        assert cache.stats(namespace="other").refusals == {}


def test_async_cache_refuses_too() -> None:
    async def main() -> None:
        async with AsyncSemanticCache(store=MemoryStore(), embedder=_embedder()) as cache:
            await cache.put(TRAP, "It is late.")
            await cache.put(PARAPHRASE, "Yes, on time.")
            hit = await cache.get(Q)
            assert hit is not None and hit.response == "Yes, on time."
            assert (await cache.stats()).refusals == {"numbers": 1}

    run(main())
