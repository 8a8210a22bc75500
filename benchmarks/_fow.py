"""The fow-cache 0.1.0 question pairs and the fixed train/test split mneme uses.

fow-cache (PyPI; data CC BY 4.0, Mabon ap Gwyn) holds 600 pairs of questions: 300 that
one answer serves ("near_repeat" and "paraphrase") and 300 traps that need another
answer ("negation", "entity_swap", "number_date", "scope"). ``a`` is the cached
question, ``b`` the new one. The near-miss guards were designed on the train half
only; the quality benchmark reports the test half.

The split is stratified by category and style, made once with ``SEED`` by
``write_split`` and committed as ``data/fow_cache_split.json``; the benchmark reads
that file, so a change of fow-cache's row order cannot move a pair between halves.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

SPLIT_FILE = Path(__file__).resolve().parent / "data" / "fow_cache_split.json"
SEED = 20261128
VERSION = "0.1.0"


@dataclass(frozen=True, slots=True)
class Pair:
    id: str
    category: str
    style: str
    a: str  # cached question
    b: str  # new question
    same_answer: bool


def load_pairs() -> list[Pair]:
    """All 600 pairs from the installed fow-cache package (pip install 'mneme[dev]')."""
    try:
        from importlib.metadata import version

        from fow_cache.data import load_questions
    except ImportError as exc:
        raise SystemExit("fow-cache is not installed: pip install 'fow-cache==0.1.0'") from exc
    if version("fow-cache") != VERSION:
        raise SystemExit(f"expected fow-cache {VERSION}, found {version('fow-cache')}")
    return [
        Pair(r["id"], r["category"], r["style"], r["a"], r["b"], bool(r["same_answer"]))
        for r in load_questions()
    ]


def write_split(pairs: list[Pair]) -> dict[str, list[str]]:
    """Half of each (category, style) group to train, the rest to test (odd groups
    give the extra pair to test); written to ``SPLIT_FILE``."""
    rng = random.Random(SEED)
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for p in pairs:
        groups[(p.category, p.style)].append(p.id)
    split: dict[str, list[str]] = {"train": [], "test": []}
    for key in sorted(groups):
        ids = sorted(groups[key])
        rng.shuffle(ids)
        half = len(ids) // 2
        split["train"] += ids[:half]
        split["test"] += ids[half:]
    split = {k: sorted(v) for k, v in split.items()}
    SPLIT_FILE.parent.mkdir(parents=True, exist_ok=True)
    SPLIT_FILE.write_text(
        json.dumps(
            {"source": f"fow-cache {VERSION}, data/pairs.jsonl", "seed": SEED, **split},
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    return split


def halves(pairs: list[Pair]) -> dict[str, list[Pair]]:
    """The committed split: {"train": [...], "test": [...]}."""
    split = json.loads(SPLIT_FILE.read_text(encoding="utf-8"))
    by_id = {p.id: p for p in pairs}
    out = {half: [by_id[i] for i in split[half]] for half in ("train", "test")}
    if len(out["train"]) + len(out["test"]) != len(pairs):
        raise SystemExit(f"{SPLIT_FILE} does not cover the {len(pairs)} pairs of fow-cache")
    return out
