"""What the near-miss checks cost per candidate.

For the 600 fow-cache 0.1.0 pairs: the time of ``NearMissGuards().refusal(new, cached)``
with both texts' features already parsed (the cache parses a question once and keeps
the result; a stored question met again is parsed once too), and with nothing cached
(both texts parsed in the call). Each figure is the median over rounds of the mean per
pair. A reference loop (``sum(range(1000))``) is timed alongside, so that a figure
taken on a loaded machine can be scaled.

    python benchmarks/guards_speed.py

Writes benchmarks/results/guards_speed.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _fow
from mneme.guards import CHECK_NAMES, NearMissGuards, features

RESULTS = Path(__file__).resolve().parent / "results"
ROUNDS = 7


def per_pair_us(fn: object, pairs: list[tuple[str, str]], clear: bool) -> float:
    times = []
    for _ in range(ROUNDS):
        if clear:
            features.cache_clear()
        else:
            for a, b in pairs:
                fn(a, b)  # type: ignore[operator]
        t = time.perf_counter()
        for a, b in pairs:
            if clear:
                features.cache_clear()
            fn(a, b)  # type: ignore[operator]
        times.append((time.perf_counter() - t) / len(pairs) * 1e6)
    return round(statistics.median(times), 2)


def main() -> int:
    pairs = [(p.b, p.a) for p in _fow.load_pairs()]
    guards = NearMissGuards()
    result = {
        "command": "python benchmarks/guards_speed.py",
        "pairs": len(pairs),
        "load_average": round(os.getloadavg()[0], 2),
        "reference_sum_range_1000_us": round(
            min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6, 2
        ),
        "all_checks_parsed_us": per_pair_us(guards.refusal, pairs, clear=False),
        "all_checks_unparsed_us": per_pair_us(guards.refusal, pairs, clear=True),
        "per_check_parsed_us": {
            name: per_pair_us(NearMissGuards([name]).refusal, pairs, clear=False)
            for name in CHECK_NAMES
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "guards_speed.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
