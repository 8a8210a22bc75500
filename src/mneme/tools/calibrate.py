"""Choose ``similarity_threshold`` from labelled pairs of questions.

Two ways in:

* ``calibrate(pairs, embedder, max_wrong_rate=...)`` takes your own pairs, each
  labelled "one answer serves both" or not (``read_labelled_pairs`` reads them from
  CSV or JSONL), scores them as the cache would (cosine of the embeddings, then the
  near-miss guards), and picks the lowest threshold whose wrong-hit rate stays within
  the target, with a Wilson 95% interval on every rate. ``format_table`` prints the
  trade-off. The wrong-hit rate is the share of should-miss pairs the cache would
  serve; the hit rate is the share of should-hit pairs it would serve.
* ``find_threshold`` / ``precision_recall_curve`` take paraphrase and distractor pairs
  as two lists and optimise F1, precision or recall (no guards).

CLI::

    python -m mneme.tools.calibrate pairs.csv --max-wrong-rate 0.02 [--embedder mod:fn]
    python -m mneme.tools.calibrate paraphrases.jsonl distractors.jsonl   # F1, as JSON

A labelled file has the fields ``a`` (the cached question), ``b`` (the new one) and
``same_answer`` (true/false, 1/0, yes/no, same/different). With one file the embedder
defaults to ``mneme.embedders.MiniLM`` when its extra is installed; with two files, to
``mneme.testing.HashingEmbedder``.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mneme._embedder import Embedder
from mneme._policy import normalize_query, unit_vector
from mneme.cache.options import GuardsOption, check_guards
from mneme.index import check_dtype, quantize

__all__ = [
    "Calibration",
    "CalibrationInputError",
    "CalibrationResult",
    "LabelledPair",
    "ThresholdRow",
    "calibrate",
    "find_threshold",
    "format_table",
    "main",
    "precision_recall_curve",
    "read_labelled_pairs",
    "wilson_interval",
]

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


# -- labelled pairs: the threshold for a wrong-hit budget ---------------------------

Z_95 = 1.959963984540054
DEFAULT_GRID = tuple(round(0.50 + i / 100, 2) for i in range(50))
_TRUE = {"true", "1", "yes", "y", "same", "hit", "t"}
_FALSE = {"false", "0", "no", "n", "different", "miss", "f"}
_LABEL_FIELDS = ("same_answer", "label", "same")


class CalibrationInputError(ValueError):
    """The labelled pairs cannot be calibrated on: a malformed row, one class only, or
    too few pairs for the interval the target needs. The message says which."""


@dataclass(frozen=True, slots=True)
class LabelledPair:
    a: str
    """The cached question."""
    b: str
    """The new question."""
    same_answer: bool
    """True when one answer serves both (the cache should hit)."""


@dataclass(frozen=True, slots=True)
class ThresholdRow:
    """What the cache would do on the pairs at one threshold."""

    threshold: float
    hits: int
    """Should-hit pairs served."""
    hit_rate: float
    hit_interval: tuple[float, float]
    wrong_hits: int
    """Should-miss pairs served."""
    wrong_rate: float
    wrong_interval: tuple[float, float]
    refused: int
    """Should-miss pairs at or above the threshold that a near-miss check refused."""


@dataclass(frozen=True, slots=True)
class Calibration:
    threshold: float | None
    """The lowest threshold meeting the target, or None when none in the grid does."""
    max_wrong_rate: float
    by_upper_bound: bool
    """The target was checked against the interval's upper end (else the rate itself)."""
    rows: tuple[ThresholdRow, ...]
    chosen: ThresholdRow | None
    same_pairs: int
    different_pairs: int
    guards: tuple[str, ...]


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95% by default)."""
    if n <= 0:
        raise ValueError("an interval needs at least one trial")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def min_pairs_for(max_wrong_rate: float, z: float = Z_95) -> int:
    """Fewest should-miss pairs for which zero wrong hits puts the interval's upper end
    at or under ``max_wrong_rate``."""
    return math.ceil(z * z * (1 - max_wrong_rate) / max_wrong_rate)


def read_labelled_pairs(path: str | Path) -> list[LabelledPair]:
    """Pairs from a CSV file (a header row naming ``a``, ``b``, ``same_answer``) or a
    JSONL file (one object per line with those fields); ``label`` or ``same`` may
    stand for ``same_answer``. Raises ``CalibrationInputError`` naming the file and
    line of the first bad row."""
    p = Path(path)
    with open(p, encoding="utf-8", newline="") as f:
        if p.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            return _jsonl_pairs(f, str(p))
        return _csv_pairs(f, str(p))


def _jsonl_pairs(lines: Iterable[str], where: str) -> list[LabelledPair]:
    pairs = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CalibrationInputError(f"{where}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise CalibrationInputError(f"{where}:{n}: expected an object with a, b, same_answer")
        pairs.append(_pair(row, f"{where}:{n}"))
    return pairs


def _csv_pairs(f: Iterable[str], where: str) -> list[LabelledPair]:
    reader = csv.DictReader(f)
    fields = set(reader.fieldnames or ())
    if not {"a", "b"} <= fields or not fields & set(_LABEL_FIELDS):
        raise CalibrationInputError(
            f"{where}: the header must name columns a, b and same_answer; found {sorted(fields)}"
        )
    return [_pair(row, f"{where}:{reader.line_num}") for row in reader]


def _pair(row: dict[str, object], where: str) -> LabelledPair:
    texts = []
    for key in ("a", "b"):
        value = row.get(key)
        if not isinstance(value, str) or not value.strip():
            raise CalibrationInputError(f"{where}: field {key!r} must be a non-empty text")
        texts.append(value)
    label = next((row[k] for k in _LABEL_FIELDS if row.get(k) is not None), None)
    return LabelledPair(texts[0], texts[1], _label(label, where))


def _label(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().casefold() if isinstance(value, str | int) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise CalibrationInputError(
        f"{where}: same_answer must be true/false (or 1/0, yes/no, same/different), got {value!r}"
    )


def calibrate(
    pairs: Sequence[LabelledPair],
    embedder: Embedder,
    *,
    max_wrong_rate: float = 0.05,
    by_upper_bound: bool = True,
    guards: GuardsOption = True,
    grid: Sequence[float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Calibration:
    """The lowest threshold of ``grid`` (default 0.50 to 0.99 by 0.01) at which the
    cache would serve at most ``max_wrong_rate`` of the should-miss pairs: the upper
    end of the rate's Wilson 95% interval when ``by_upper_bound`` (the default), else
    the rate itself. ``guards`` takes what the cache's ``guards=`` does (default: all
    checks on, as in the cache). ``progress(done, total)`` follows the embedding.

    Raises ``CalibrationInputError`` when the pairs hold one class only, or too few
    should-miss pairs for the interval to reach the target even with no wrong hit.
    """
    if not 0 < max_wrong_rate < 1:
        raise ValueError(f"max_wrong_rate must be between 0 and 1, got {max_wrong_rate!r}")
    same = sum(p.same_answer for p in pairs)
    different = len(pairs) - same
    if not same or not different:
        kind = "should-hit (same_answer true)" if not same else "should-miss (false)"
        raise CalibrationInputError(
            f"the {len(pairs)} pairs hold no {kind} pair: calibration needs both kinds"
        )
    needed = min_pairs_for(max_wrong_rate)
    if by_upper_bound and different < needed:
        raise CalibrationInputError(
            f"{different} should-miss pairs are too few for a 95% interval to show a "
            f"wrong-hit rate of at most {max_wrong_rate:g}: even with no wrong hit its "
            f"upper end is {wilson_interval(0, different)[1]:.3f}; label at least "
            f"{needed}, or pass by_upper_bound=False to use the rate itself"
        )
    checks = check_guards(guards)
    sims = _pair_similarities(pairs, embedder, progress)
    refused = np.array([checks is not None and checks.refusal(p.b, p.a) is not None for p in pairs])
    labels = np.array([p.same_answer for p in pairs])
    rows = []
    for t in sorted(grid if grid is not None else DEFAULT_GRID):
        above = sims >= t
        served = above & ~refused
        hits, wrong = int(np.sum(served & labels)), int(np.sum(served & ~labels))
        rows.append(
            ThresholdRow(
                threshold=float(t),
                hits=hits,
                hit_rate=hits / same,
                hit_interval=wilson_interval(hits, same),
                wrong_hits=wrong,
                wrong_rate=wrong / different,
                wrong_interval=wilson_interval(wrong, different),
                refused=int(np.sum(above & refused & ~labels)),
            )
        )
    chosen = next(
        (
            r
            for r in rows
            if (r.wrong_interval[1] if by_upper_bound else r.wrong_rate) <= max_wrong_rate
        ),
        None,
    )
    return Calibration(
        threshold=None if chosen is None else chosen.threshold,
        max_wrong_rate=max_wrong_rate,
        by_upper_bound=by_upper_bound,
        rows=tuple(rows),
        chosen=chosen,
        same_pairs=same,
        different_pairs=different,
        guards=() if checks is None else checks.names,
    )


def _pair_similarities(
    pairs: Sequence[LabelledPair],
    embedder: Embedder,
    progress: Callable[[int, int], None] | None,
) -> npt.NDArray[np.float64]:
    texts = sorted({normalize_query(t) for p in pairs for t in (p.a, p.b)})
    vectors = _embed_all(texts, embedder, progress)
    index = {t: i for i, t in enumerate(texts)}
    a = vectors[[index[normalize_query(p.a)] for p in pairs]]
    b = vectors[[index[normalize_query(p.b)] for p in pairs]]
    sims: npt.NDArray[np.float64] = np.sum(a * b, axis=1).astype(np.float64)
    return sims


def _embed_all(
    texts: list[str], embedder: Embedder, progress: Callable[[int, int], None] | None
) -> npt.NDArray[np.float32]:
    many = getattr(embedder, "embed_many", None)
    out = np.empty((len(texts), embedder.dim), dtype=np.float32)
    step = 64
    for start in range(0, len(texts), step):
        chunk = texts[start : start + step]
        raw = many(chunk) if many is not None else [embedder.embed(t) for t in chunk]
        for i, vec in enumerate(raw):
            out[start + i] = unit_vector(vec, embedder.dim)
        if progress is not None:
            progress(min(start + step, len(texts)), len(texts))
    return out


def format_table(cal: Calibration, *, every: float = 0.05) -> str:
    """The trade-off as a text table: thresholds every ``every`` plus the chosen one
    (marked ``*``), with hit and wrong-hit rates and their 95% intervals."""
    lines = [
        f"{cal.same_pairs} should-hit and {cal.different_pairs} should-miss pairs; "
        f"near-miss checks: {', '.join(cal.guards) or 'off'}",
        "",
    ]
    width = len(_rate(0, max(cal.same_pairs, cal.different_pairs), (0.0, 0.0)))
    lines.append(
        f"  threshold  {'hits served (95% CI)':<{width}}  {'wrong hits (95% CI)':<{width}}  refused"
    )
    for r in cal.rows:
        on_step = abs(r.threshold / every - round(r.threshold / every)) < 1e-6
        if not on_step and r is not cal.chosen:
            continue
        lines.append(
            f"{'*' if r is cal.chosen else ' '} {r.threshold:9.2f}  "
            f"{_rate(r.hits, cal.same_pairs, r.hit_interval)}  "
            f"{_rate(r.wrong_hits, cal.different_pairs, r.wrong_interval)}  {r.refused:7d}"
        )
    bound = "the 95% upper bound of the" if cal.by_upper_bound else "the"
    if cal.chosen is None:
        lines += [
            "",
            f"no threshold keeps {bound} wrong-hit rate within {cal.max_wrong_rate:g}",
        ]
    else:
        c = cal.chosen
        lines += [
            "",
            f"threshold {c.threshold:.2f}: {bound} wrong-hit rate within "
            f"{cal.max_wrong_rate:g}, serving {c.hit_rate:.1%} of should-hit pairs",
        ]
    return "\n".join(lines)


def _rate(k: int, n: int, interval: tuple[float, float]) -> str:
    return f"{k:5d}/{n:<5d} {k / n:6.1%} ({interval[0]:6.1%} to {interval[1]:6.1%})"


def _read_pairs(path: str) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8") as f:
        return [(row["a"], row["b"]) for row in map(json.loads, f) if row]


def _load_embedder(spec: str | None, dim: int, *, real: bool = False) -> Embedder:
    if spec is None:
        if real:
            try:
                from mneme.embedders import MiniLM

                return MiniLM()
            except ImportError:
                print(
                    "mneme: the 'minilm' extra is not installed; calibrating with "
                    "mneme.testing.HashingEmbedder (pass --embedder module:factory)",
                    file=sys.stderr,
                )
        from mneme.testing import HashingEmbedder

        return HashingEmbedder(dim)
    module, _, attr = spec.partition(":")
    factory = getattr(importlib.import_module(module), attr)
    embedder: Embedder = factory()
    return embedder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mneme.tools.calibrate",
        description="Choose similarity_threshold from labelled pairs of questions.",
    )
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="one labelled CSV/JSONL file (a, b, same_answer), or two JSONL files of "
        "paraphrase and distractor pairs (a, b)",
    )
    parser.add_argument("--embedder", help="module:factory returning an embedder")
    parser.add_argument("--dim", type=int, default=384, help="dim of HashingEmbedder")
    parser.add_argument("--max-wrong-rate", type=float, default=0.05)
    parser.add_argument(
        "--point", action="store_true", help="hold the rate itself, not its 95%% upper bound"
    )
    parser.add_argument("--no-guards", action="store_true", help="score without near-miss checks")
    parser.add_argument("--target-metric", default="f1", choices=_METRICS)
    parser.add_argument("--min-precision", type=float)
    parser.add_argument("--min-recall", type=float)
    parser.add_argument("--vector-dtype", default="float32")
    args = parser.parse_args(argv)
    if len(args.files) > 2:
        parser.error("give one labelled file, or two files (paraphrases, distractors)")
    if len(args.files) == 2:
        return _main_two_files(args)
    try:
        pairs = read_labelled_pairs(args.files[0])
        cal = calibrate(
            pairs,
            _load_embedder(args.embedder, args.dim, real=True),
            max_wrong_rate=args.max_wrong_rate,
            by_upper_bound=not args.point,
            guards=not args.no_guards,
        )
    except (CalibrationInputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(cal))
    return 0 if cal.threshold is not None else 1


def _main_two_files(args: argparse.Namespace) -> int:
    result = find_threshold(
        _read_pairs(args.files[0]),
        _read_pairs(args.files[1]),
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
