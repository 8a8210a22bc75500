"""MiniLM's speed: vectors per second in batches and one question's latency.

Texts are the questions of fow-cache 0.1.0 (short support questions, 5 to 25 words).
Each setting runs after a warm-up; the single-question latency is the median and p90
of one ``embed`` call at a time. The machine's load average is recorded with the
result, since other work on the cores slows every figure.

    python benchmarks/minilm_speed.py [--threads 1 2] [--rounds 3]

Writes benchmarks/results/minilm_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _fow
from mneme.embedders import MiniLM

RESULTS = Path(__file__).resolve().parent / "results"


def measure(threads: int, texts: list[str], rounds: int) -> dict[str, Any]:
    started = time.perf_counter()
    model = MiniLM(threads=threads)
    load_s = time.perf_counter() - started
    model.embed_many(texts[:64])  # warm-up
    batched = []
    for _ in range(rounds):
        t = time.perf_counter()
        model.embed_many(texts)
        batched.append(len(texts) / (time.perf_counter() - t))
    for text in texts[:20]:
        model.embed(text)
    latencies = []
    for _ in range(rounds):
        for text in texts[:200]:
            t = time.perf_counter()
            model.embed(text)
            latencies.append(time.perf_counter() - t)
    ms = np.array(latencies) * 1000
    return {
        "threads": threads,
        "load_seconds": round(load_s, 3),
        "batched_vectors_per_s": round(max(batched), 1),
        "batched_vectors_per_s_all": [round(b, 1) for b in batched],
        "single_ms_median": round(float(np.median(ms)), 2),
        "single_ms_p90": round(float(np.percentile(ms, 90)), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = [t for p in _fow.load_pairs() for t in (p.a, p.b)]
    load_before = os.getloadavg()
    runs = [measure(n, texts, args.rounds) for n in args.threads]
    result = {
        "command": "python benchmarks/minilm_speed.py",
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "texts": len(texts),
        "batch_size": 32,
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "minilm_speed.json").write_text(json.dumps(result, indent=1) + "\n")
    for r in runs:
        print(
            f"threads={r['threads']}: {r['batched_vectors_per_s']:.0f} vectors/s batched, "
            f"one question {r['single_ms_median']:.1f} ms median "
            f"({r['single_ms_p90']:.1f} ms p90), model load {r['load_seconds']:.2f} s"
        )
    print(f"load average before/after: {result['load_average_before_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
