"""Choose ``similarity_threshold`` from labelled pairs.

Paraphrase pairs should hit (their cosine similarity at or above the threshold);
distractor pairs should miss. For each candidate threshold this computes precision,
recall and F1 and picks the best one under the constraints given.

CLI: ``python -m mneme.tools.calibrate paraphrases.jsonl distractors.jsonl`` where each
line is ``{"a": "...", "b": "..."}``; it uses ``mneme.testing.HashingEmbedder`` unless
``--embedder module:factory`` names another.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mneme._embedder import Embedder
from mneme._policy import normalize_query, unit_vector
from mneme.index import check_dtype, quantize

__all__ = ["CalibrationResult", "find_threshold", "main", "precision_recall_curve"]

_METRICS = ("f1", "precision", "recall")


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    threshold: float
    precision: float
    recall: float
    f1: float
    pr_curve: list[tuple[float, float, float]]
    """(threshold, precision, recall) for every threshold tried, ascending."""


def _similarities(
    pairs: Iterable[tuple[str, str]], embedder: Embedder, dtype: str
) -> npt.NDArray[np.float64]:
    sims = []
    for a, b in pairs:
        va = unit_vector(embedder.embed(normalize_query(a)), embedder.dim)
        vb = unit_vector(embedder.embed(normalize_query(b)), embedder.dim)
        if dtype != "float32":
            # Score as the in-process index would, with the stored side quantised.
            q = quantize(vb.reshape(1, -1), dtype).astype(np.float32)[0]
            vb = q / 127.0 if dtype == "int8" else q
        sims.append(float(np.dot(va, vb)))
    return np.asarray(sims, dtype=np.float64)


def precision_recall_curve(
    paraphrase_pairs: Sequence[tuple[str, str]],
    distractor_pairs: Sequence[tuple[str, str]],
    embedder: Embedder,
    *,
    grid: Sequence[float] | None = None,
    vector_dtype: str = "float32",
) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) for each threshold of ``grid`` (default: 0.50 to
    0.99 in steps of 0.01). Precision is 1.0 where nothing is predicted positive."""
    check_dtype(vector_dtype)
    if not paraphrase_pairs:
        raise ValueError("paraphrase_pairs must not be empty")
    pos = _similarities(paraphrase_pairs, embedder, vector_dtype)
    neg = _similarities(distractor_pairs, embedder, vector_dtype)
    thresholds = sorted(grid) if grid is not None else [round(0.5 + i / 100, 2) for i in range(50)]
    curve = []
    for t in thresholds:
        tp = int(np.sum(pos >= t))
        fp = int(np.sum(neg >= t))
        precision = tp / (tp + fp) if tp + fp else 1.0
        curve.append((float(t), precision, tp / len(pos)))
    return curve


def find_threshold(
    paraphrase_pairs: Sequence[tuple[str, str]],
    distractor_pairs: Sequence[tuple[str, str]],
    embedder: Embedder,
    *,
    target_metric: str = "f1",
    min_precision: float | None = None,
    min_recall: float | None = None,
    grid: Sequence[float] | None = None,
    vector_dtype: str = "float32",
) -> CalibrationResult:
    """The threshold that maximises ``target_metric`` ("f1", "precision" or "recall")
    among those meeting ``min_precision`` / ``min_recall``; ties go to the higher
    threshold (fewer false hits). Raises ``ValueError`` when none qualifies."""
    if target_metric not in _METRICS:
        raise ValueError(f"target_metric must be one of {_METRICS}, got {target_metric!r}")
    curve = precision_recall_curve(
        paraphrase_pairs, distractor_pairs, embedder, grid=grid, vector_dtype=vector_dtype
    )
    best: tuple[float, float, float, float, float] | None = None
    for t, p, r in curve:
        if (min_precision is not None and p < min_precision) or (
            min_recall is not None and r < min_recall
        ):
            continue
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        score = {"f1": f1, "precision": p, "recall": r}[target_metric]
        if best is None or (score, t) >= (best[0], best[1]):
            best = (score, t, p, r, f1)
    if best is None:
        raise ValueError(
            "no threshold meets the constraints "
            f"(min_precision={min_precision}, min_recall={min_recall}); relax them"
        )
    _, t, p, r, f1 = best
    return CalibrationResult(threshold=t, precision=p, recall=r, f1=f1, pr_curve=curve)


def _read_pairs(path: str) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8") as f:
        return [(row["a"], row["b"]) for row in map(json.loads, f) if row]


def _load_embedder(spec: str | None, dim: int) -> Embedder:
    if spec is None:
        from mneme.testing import HashingEmbedder

        return HashingEmbedder(dim)
    module, _, attr = spec.partition(":")
    factory = getattr(importlib.import_module(module), attr)
    embedder: Embedder = factory()
    return embedder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mneme.tools.calibrate", description=__doc__)
    parser.add_argument("paraphrases", help="JSONL of pairs that should hit (fields a, b)")
    parser.add_argument("distractors", help="JSONL of pairs that should miss (fields a, b)")
    parser.add_argument("--embedder", help="module:factory returning an embedder")
    parser.add_argument("--dim", type=int, default=384, help="dim of the default embedder")
    parser.add_argument("--target-metric", default="f1", choices=_METRICS)
    parser.add_argument("--min-precision", type=float)
    parser.add_argument("--min-recall", type=float)
    parser.add_argument("--vector-dtype", default="float32")
    args = parser.parse_args(argv)
    result = find_threshold(
        _read_pairs(args.paraphrases),
        _read_pairs(args.distractors),
        _load_embedder(args.embedder, args.dim),
        target_metric=args.target_metric,
        min_precision=args.min_precision,
        min_recall=args.min_recall,
        vector_dtype=args.vector_dtype,
    )
    json.dump(
        {
            "threshold": result.threshold,
            "precision": result.precision,
            "recall": result.recall,
            "f1": result.f1,
        },
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
