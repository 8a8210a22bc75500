"""Calibration and re-embedding tools."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from mneme import EmbedderMismatchError, SemanticCache
from mneme.testing import HashingEmbedder, TableEmbedder
from mneme.tools.calibrate import find_threshold, precision_recall_curve
from mneme.tools.migrate import areembed, reembed


def _unit(*xs: float) -> npt.NDArray[np.float32]:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def _pair_embedder() -> tuple[TableEmbedder, list[tuple[str, str]], list[tuple[str, str]]]:
    # Paraphrases at cosine 0.95 and 0.90; distractors at 0.80 and 0.60.
    table: dict[str, npt.NDArray[np.float32]] = {}
    pos, neg = [], []
    for i, cos in enumerate([0.95, 0.90]):
        table[f"p{i}a"] = _unit(1, 0)
        table[f"p{i}b"] = _unit(cos, float(np.sqrt(1 - cos * cos)))
        pos.append((f"p{i}a", f"p{i}b"))
    for i, cos in enumerate([0.80, 0.60]):
        table[f"n{i}a"] = _unit(1, 0)
        table[f"n{i}b"] = _unit(cos, float(np.sqrt(1 - cos * cos)))
        neg.append((f"n{i}a", f"n{i}b"))
    return TableEmbedder(table, dim=2), pos, neg


def test_find_threshold_separates_paraphrases_from_distractors() -> None:
    emb, pos, neg = _pair_embedder()
    result = find_threshold(pos, neg, emb)
    # Every threshold in (0.80, 0.90] is perfect; ties go to the highest.
    assert result.precision == 1.0 and result.recall == 1.0 and result.f1 == 1.0
    assert 0.80 < result.threshold <= 0.90
    assert result.threshold == pytest.approx(0.89)


def test_curve_and_constraints() -> None:
    emb, pos, neg = _pair_embedder()
    curve = precision_recall_curve(pos, neg, emb, grid=[0.5, 0.85, 0.93, 0.99])
    assert curve == [(0.5, 0.5, 1.0), (0.85, 1.0, 1.0), (0.93, 1.0, 0.5), (0.99, 1.0, 0.0)]
    high = find_threshold(pos, neg, emb, target_metric="recall", grid=[0.5, 0.85, 0.93])
    assert high.threshold == 0.85
    with pytest.raises(ValueError, match="no threshold"):
        find_threshold(pos, neg, emb, min_precision=1.0, min_recall=1.0, grid=[0.5, 0.93])
    with pytest.raises(ValueError, match="target_metric"):
        find_threshold(pos, neg, emb, target_metric="accuracy")


def test_calibrate_cli(tmp_path: Path) -> None:
    paraphrases = tmp_path / "pos.jsonl"
    distractors = tmp_path / "neg.jsonl"
    paraphrases.write_text(
        "\n".join(
            json.dumps({"a": a, "b": b})
            for a, b in [
                ("what is the capital of france", "what is the capital city of france"),
                ("how many legs does a spider have", "how many legs has a spider"),
            ]
        )
    )
    distractors.write_text(json.dumps({"a": "who wrote war and peace", "b": "how to bake bread"}))
    out = subprocess.run(
        [sys.executable, "-m", "mneme.tools.calibrate", str(paraphrases), str(distractors)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out)
    assert result["precision"] == 1.0 and result["recall"] == 1.0
    assert 0.5 <= result["threshold"] < 1.0


def _fill(path: Path) -> None:
    with SemanticCache(str(path), HashingEmbedder(64)) as cache:
        cache.put("What is the capital of France?", "Paris", metadata={"src": "atlas"}, ttl=3600)
        cache.put("How many legs does a spider have?", "Eight", namespace="zoo")


def test_reembed_copies_entries_under_the_new_embedder(tmp_path: Path) -> None:
    src, dst = tmp_path / "old.db", tmp_path / "new.db"
    _fill(src)
    new = HashingEmbedder(128)
    assert reembed(str(src), str(dst), new, batch_size=1) == 2
    with pytest.raises(EmbedderMismatchError, match="reembed"):
        SemanticCache(str(dst), HashingEmbedder(64))
    with SemanticCache(str(dst), new) as cache:
        exact = cache.get("what is the capital of france?")
        assert exact is not None and exact.response == "Paris"
        assert exact.metadata == {"src": "atlas"}
        semantic = cache.get("How many legs does the spider have?", namespace="zoo")
        assert semantic is not None and semantic.layer == "semantic"
    # The source still opens with its own embedder, untouched.
    with SemanticCache(str(src), HashingEmbedder(64)) as cache:
        assert cache.stats().entries == 2


def test_reembed_namespaces_and_async(tmp_path: Path) -> None:
    src = tmp_path / "old.db"
    _fill(src)
    assert reembed(str(src), str(tmp_path / "zoo.db"), HashingEmbedder(16), namespaces=["zoo"]) == 1
    n = asyncio.run(areembed(str(src), str(tmp_path / "all.db"), HashingEmbedder(16)))
    assert n == 2


def test_reembed_reports_progress_to_a_callback(tmp_path: Path) -> None:
    from mneme import Progress

    src = tmp_path / "old.db"
    _fill(src)
    events: list[Progress] = []
    assert (
        reembed(
            str(src),
            str(tmp_path / "n.db"),
            HashingEmbedder(16),
            batch_size=1,
            progress=events.append,
        )
        == 2
    )
    assert [(e.task, e.done, e.total) for e in events] == [
        ("reembed", 0, 2),
        ("reembed", 1, 2),
        ("reembed", 2, 2),
    ]
