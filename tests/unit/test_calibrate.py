"""Calibration on labelled pairs: the lowest threshold whose wrong-hit rate (share of
should-miss pairs served) meets the target, by its Wilson 95% upper bound or by the
rate itself, with the near-miss checks applied as the cache applies them; the trade-off
table; clear errors for bad rows, one class, too few pairs; the command line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from mneme.testing import TableEmbedder
from mneme.tools.calibrate import (
    Calibration,
    CalibrationInputError,
    LabelledPair,
    calibrate,
    format_table,
    min_pairs_for,
    read_labelled_pairs,
    wilson_interval,
)


def _at(c: float) -> list[float]:
    return [c, math.sqrt(1 - c * c)]


def _data() -> tuple[list[LabelledPair], TableEmbedder]:
    """100 should-miss pairs: 90 unrelated (0.60), 6 near misses by a number (0.895,
    refused by the checks), 4 near misses no check sees (0.895); 100 should-hit pairs,
    half at 0.95 and half at 0.80."""
    table: dict[str, list[float]] = {}
    pairs = []

    def add(a: str, b: str, cos: float, same: bool) -> None:
        table[a], table[b] = [1.0, 0.0], _at(cos)
        pairs.append(LabelledPair(a, b, same))

    for i in range(90):
        add(
            f"unrelated question {'abcdefghij'[i % 10]} {i:03d}x",
            f"other thing {i:03d}x",
            0.6,
            False,
        )
    for i in range(6):
        add(f"is the train at 9:1{i} on time", f"is the train at 9:4{i} on time", 0.895, False)
    for name in ("gift", "flat", "puppy", "hand"):
        add(f"how much is a {name}", f"how much is a {name} card", 0.895, False)
    for i in range(100):
        add(
            f"how do i reset password {i:03d}x",
            f"resetting password {i:03d}x",
            0.95 if i < 50 else 0.8,
            True,
        )
    return pairs, TableEmbedder(table, dim=2)


def _row(cal: Calibration, t: float) -> tuple[int, int, int]:
    row = next(r for r in cal.rows if abs(r.threshold - t) < 1e-9)
    return row.hits, row.wrong_hits, row.refused


def test_picks_the_lowest_threshold_whose_upper_bound_meets_the_target() -> None:
    pairs, emb = _data()
    cal = calibrate(pairs, emb, max_wrong_rate=0.05)
    assert (cal.same_pairs, cal.different_pairs) == (100, 100)
    assert cal.guards == ("numbers", "negation", "entities", "code", "comparison")
    assert _row(cal, 0.55) == (100, 94, 6)
    assert _row(cal, 0.70) == (100, 4, 6)  # 4% wrong, but the interval reaches 9.8%
    assert _row(cal, 0.85) == (50, 4, 6)
    assert cal.threshold == pytest.approx(0.90) and cal.chosen is not None
    assert (cal.chosen.hits, cal.chosen.wrong_hits) == (50, 0)
    assert cal.chosen.wrong_interval[1] == pytest.approx(wilson_interval(0, 100)[1])
    assert cal.chosen.hit_rate == 0.5


def test_by_the_rate_itself_and_without_guards() -> None:
    pairs, emb = _data()
    point = calibrate(pairs, emb, max_wrong_rate=0.05, by_upper_bound=False)
    assert point.threshold == pytest.approx(0.61)
    assert point.chosen is not None and point.chosen.hit_rate == 1.0
    bare = calibrate(pairs, emb, max_wrong_rate=0.05, by_upper_bound=False, guards=False)
    assert bare.guards == ()
    assert _row(bare, 0.70) == (100, 10, 0)
    assert bare.threshold == pytest.approx(0.90)
    none = calibrate(pairs, emb, max_wrong_rate=0.05, grid=[0.5, 0.7])
    assert none.threshold is None and none.chosen is None


def test_trade_off_table() -> None:
    pairs, emb = _data()
    text = format_table(calibrate(pairs, emb, max_wrong_rate=0.05))
    lines = text.splitlines()
    assert lines[0].startswith(
        "100 should-hit and 100 should-miss pairs; near-miss checks: numbers"
    )
    chosen = [line for line in lines if line.startswith("*")]
    assert len(chosen) == 1 and chosen[0].split()[1] == "0.90"
    assert "    0/100 " in chosen[0]
    assert any(line.split()[:1] == ["0.70"] and "4/100" in line for line in lines)
    assert lines[-1] == (
        "threshold 0.90: the 95% upper bound of the wrong-hit rate within 0.05, "
        "serving 50.0% of should-hit pairs"
    )
    none = format_table(calibrate(pairs, emb, max_wrong_rate=0.05, grid=[0.5]))
    assert none.splitlines()[-1].startswith("no threshold keeps")


def test_clear_errors_for_one_class_and_too_few_pairs() -> None:
    pairs, emb = _data()
    with pytest.raises(CalibrationInputError, match="no should-miss"):
        calibrate([p for p in pairs if p.same_answer], emb)
    with pytest.raises(CalibrationInputError, match="no should-hit"):
        calibrate([p for p in pairs if not p.same_answer], emb)
    few = [p for p in pairs if p.same_answer] + [p for p in pairs if not p.same_answer][:50]
    with pytest.raises(
        CalibrationInputError, match=r"50 should-miss pairs are too few.*at least 73"
    ):
        calibrate(few, emb, max_wrong_rate=0.05)
    assert calibrate(few, emb, max_wrong_rate=0.05, by_upper_bound=False).threshold is not None
    with pytest.raises(ValueError, match="max_wrong_rate"):
        calibrate(pairs, emb, max_wrong_rate=0)
    assert min_pairs_for(0.05) == 73 and min_pairs_for(0.02) == 189
    assert wilson_interval(0, 73)[1] <= 0.05 < wilson_interval(0, 72)[1]


def test_reads_csv_and_jsonl(tmp_path: Path) -> None:
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text(
        'a,b,same_answer\n"Hi, how do I reset it?",reset it,true\nx,y,No\nq,r,1\ns,t,different\n',
        encoding="utf-8",
    )
    assert read_labelled_pairs(csv_file) == [
        LabelledPair("Hi, how do I reset it?", "reset it", True),
        LabelledPair("x", "y", False),
        LabelledPair("q", "r", True),
        LabelledPair("s", "t", False),
    ]
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(
        json.dumps({"a": "x", "b": "y", "same_answer": False})
        + "\n\n"
        + json.dumps({"a": "q", "b": "r", "label": "same"})
        + "\n",
        encoding="utf-8",
    )
    assert read_labelled_pairs(jsonl) == [
        LabelledPair("x", "y", False),
        LabelledPair("q", "r", True),
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("p.csv", "question,answer\nx,y\n", "header must name columns a, b and same_answer"),
        ("p.csv", "a,b,same_answer\nx,y,true\nx,,false\n", r"p\.csv:3: field 'b' must be"),
        ("p.csv", "a,b,same_answer\nx,y,maybe\n", r"p\.csv:2: same_answer must be true/false"),
        (
            "p.jsonl",
            '{"a": "x", "b": "y", "same_answer": true}\n{"a": "x"\n',
            r"p\.jsonl:2: not JSON",
        ),
        ("p.jsonl", '["x", "y", true]\n', r"p\.jsonl:1: expected an object"),
        ("p.jsonl", '{"a": "x", "b": "y"}\n', r"p\.jsonl:1: same_answer must be"),
    ],
)
def test_malformed_rows_are_named(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CalibrationInputError, match=message):
        read_labelled_pairs(path)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mneme.tools.calibrate", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_command_line(tmp_path: Path) -> None:
    rows = ["a,b,same_answer"]
    rows += [
        f"how do i reset my password {i},how do i reset my password {i} please,true"
        for i in range(20)
    ]
    words = ["apple", "bridge", "candle", "dolphin", "engine", "forest", "guitar", "harbor"]
    rows += [
        f"{words[i % 8]} {words[(i + 3) % 8]} question {i},{words[(i + 5) % 8]} zz {i * 7},false"
        for i in range(80)
    ]
    good = tmp_path / "pairs.csv"
    good.write_text("\n".join(rows) + "\n", encoding="utf-8")
    embedder = "--embedder=mneme.testing:HashingEmbedder"
    done = _cli(str(good), embedder, "--max-wrong-rate", "0.05")
    assert done.returncode == 0, done.stderr
    assert "20 should-hit and 80 should-miss pairs" in done.stdout
    assert "serving 100.0% of should-hit pairs" in done.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,same_answer\nx,y,perhaps\n", encoding="utf-8")
    done = _cli(str(bad), embedder)
    assert done.returncode == 2
    assert "bad.csv:2: same_answer must be true/false" in done.stderr
    done = _cli(str(good), embedder, "--max-wrong-rate", "0.01")
    assert done.returncode == 2 and "too few" in done.stderr
    done = _cli(str(good), embedder, "--max-wrong-rate", "0.0001", "--point")
    assert done.returncode in (0, 1) and "threshold" in done.stdout
