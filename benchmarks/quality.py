"""How often would mneme serve the wrong answer? MiniLM + near-miss guards on fow-cache.

For every pair of the fow-cache 0.1.0 test half (see _fow.py; the guards were designed
on the train half only), the cached question ``a`` and the new question ``b`` are
embedded with ``mneme.embedders.MiniLM`` (normalised as the cache normalises them) and
scored by cosine; the near-miss guards then decide whether the cache would refuse the
candidate. A pair is *served* when its cosine reaches the threshold and no check
refuses it: exactly what Layer 2 does with one stored entry. Easy negatives are the
cross-pairs of the half's rows (``a`` of one row with ``b`` of another).

Reported: served rate of the should-hit pairs ("paraphrases": near_repeat and
paraphrase) and of the traps, with Wilson 95% intervals, at the cache's default
threshold, with and without guards; per category; a threshold sweep (table and PNG);
the AUC of should-hit against trap scores with and without guards (a refused pair
scores below every threshold).

    python benchmarks/quality.py            # or: make quality

Writes benchmarks/results/quality.json and quality-sweep.png, and the generated
section of docs/quality.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _fow
from mneme import SemanticCache
from mneme._policy import normalize_query
from mneme.embedders import MiniLM
from mneme.guards import NearMissGuards
from mneme.tools.calibrate import wilson_interval

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "quality.md"
BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"
SWEEP = [round(0.70 + i / 100, 2) for i in range(30)]
TARGET_TRAPS, TARGET_HITS = 0.05, 0.45


@dataclass
class Scored:
    pairs: list[_fow.Pair]
    sims: npt.NDArray[np.float64]
    refused: list[str | None]  # the check that refuses each pair, or None

    @property
    def labels(self) -> npt.NDArray[np.bool_]:
        return np.array([p.same_answer for p in self.pairs])

    def served(self, t: float, guards: bool) -> npt.NDArray[np.bool_]:
        above = self.sims >= t
        if not guards:
            return above
        return above & np.array([r is None for r in self.refused])


def default_threshold() -> float:
    value = inspect.signature(SemanticCache).parameters["similarity_threshold"].default
    return float(value)


def embed_texts(texts: list[str], embedder: MiniLM) -> dict[str, npt.NDArray[np.float32]]:
    unique = sorted({normalize_query(t) for t in texts})
    started = time.perf_counter()

    def report(done: int, total: int) -> None:
        print(f"\r  embedding {done}/{total} texts", end="", file=sys.stderr, flush=True)

    vectors = embedder.embed_many(unique, progress=report)
    print(f" ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return dict(zip(unique, vectors, strict=True))


def score(
    pairs: list[_fow.Pair], vec: dict[str, npt.NDArray[np.float32]], guards: NearMissGuards
) -> Scored:
    sims = np.array([float(vec[normalize_query(p.a)] @ vec[normalize_query(p.b)]) for p in pairs])
    return Scored(pairs, sims, [guards.refusal(p.b, p.a) for p in pairs])


def easy_negatives(
    pairs: list[_fow.Pair],
    vec: dict[str, npt.NDArray[np.float32]],
    guards: NearMissGuards,
    floor: float,
) -> dict[str, Any]:
    """Every a_i with every b_j (i != j, different texts): unrelated questions, bar a
    few rows of fow-cache that ask about the same thing. Guards run on the pairs at or
    above ``floor`` only (below it nothing is served at any swept threshold)."""
    a = np.stack([vec[normalize_query(p.a)] for p in pairs])
    b = np.stack([vec[normalize_query(p.b)] for p in pairs])
    sims = a @ b.T
    keep = np.ones_like(sims, dtype=bool)
    np.fill_diagonal(keep, False)
    for i, p in enumerate(pairs):
        for j, q in enumerate(pairs):
            if normalize_query(p.a) in (normalize_query(q.a), normalize_query(q.b)):
                keep[i, j] = False
    flat = sims[keep]
    idx = np.argwhere(keep & (sims >= floor))
    refused = {(int(i), int(j)): guards.refusal(pairs[j].b, pairs[i].a) is not None for i, j in idx}
    sweep = []
    for t in SWEEP:
        above = [(int(i), int(j)) for i, j in idx if sims[i, j] >= t]
        guarded = sum(not refused[k] for k in above)
        sweep.append({"threshold": t, "served": len(above), "served_guarded": guarded})
    return {"pairs": int(flat.size), "sweep": sweep, "max_similarity": float(flat.max())}


def rate(k: int, n: int) -> dict[str, Any]:
    low, high = wilson_interval(k, n)
    return {"served": k, "of": n, "rate": k / n, "ci95": [low, high]}


def auc(pos: npt.NDArray[np.float64], neg: npt.NDArray[np.float64]) -> float:
    """P(score of a should-hit pair > score of a trap), ties counting a half."""
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def summarise(s: Scored, t: float, easy: dict[str, Any]) -> dict[str, Any]:
    labels = s.labels
    out: dict[str, Any] = {"threshold": t}
    for guards in (False, True):
        served = s.served(t, guards)
        key = "guards" if guards else "no_guards"
        out[key] = {
            "should_hit": rate(int(np.sum(served & labels)), int(labels.sum())),
            "traps": rate(int(np.sum(served & ~labels)), int((~labels).sum())),
            "by_category": {
                cat: rate(
                    int(sum(served[i] for i, p in enumerate(s.pairs) if p.category == cat)),
                    sum(p.category == cat for p in s.pairs),
                )
                for cat in sorted({p.category for p in s.pairs})
            },
        }
    refused_scores = np.where([r is None for r in s.refused], s.sims, -2.0)
    out["auc"] = {
        "no_guards": auc(s.sims[labels], s.sims[~labels]),
        "guards": auc(refused_scores[labels], refused_scores[~labels]),
    }
    verdicts = list(zip(s.refused, labels, strict=True))
    out["refusals"] = {
        "traps": dict(Counter(r for r, lab in verdicts if r and not lab)),
        "should_hit": dict(Counter(r for r, lab in verdicts if r and lab)),
    }
    above = s.sims >= t
    out["failures"] = {
        "traps_served": [
            {"id": p.id, "similarity": round(float(s.sims[i]), 4), "a": p.a, "b": p.b}
            for i, p in enumerate(s.pairs)
            if not p.same_answer and above[i] and s.refused[i] is None
        ],
        "should_hit_refused": [
            {"id": p.id, "similarity": round(float(s.sims[i]), 4), "check": s.refused[i]}
            | {"a": p.a, "b": p.b}
            for i, p in enumerate(s.pairs)
            if p.same_answer and above[i] and s.refused[i] is not None
        ],
    }
    easy_row = next(r for r in easy["sweep"] if r["threshold"] == t)
    out["easy_negatives"] = {
        "no_guards": rate(easy_row["served"], easy["pairs"]),
        "guards": rate(easy_row["served_guarded"], easy["pairs"]),
    }
    return out


def sweep_rows(s: Scored, easy: dict[str, Any]) -> list[dict[str, Any]]:
    labels = s.labels
    rows = []
    for t, e in zip(SWEEP, easy["sweep"], strict=True):
        row: dict[str, Any] = {"threshold": t}
        for guards in (False, True):
            served = s.served(t, guards)
            sfx = "_guards" if guards else ""
            row["should_hit" + sfx] = float(np.mean(served[labels]))
            row["traps" + sfx] = float(np.mean(served[~labels]))
        row["easy"] = e["served"] / easy["pairs"]
        row["easy_guards"] = e["served_guarded"] / easy["pairs"]
        rows.append(row)
    return rows


def plot(rows: list[dict[str, Any]], t0: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["threshold"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ax.plot(
        x,
        [100 * r["should_hit"] for r in rows],
        "--",
        color="tab:blue",
        label="should-hit, cosine only",
    )
    ax.plot(
        x,
        [100 * r["should_hit_guards"] for r in rows],
        "-",
        color="tab:blue",
        label="should-hit, with guards",
    )
    ax.plot(x, [100 * r["traps"] for r in rows], "--", color="tab:red", label="traps, cosine only")
    ax.plot(
        x, [100 * r["traps_guards"] for r in rows], "-", color="tab:red", label="traps, with guards"
    )
    ax.plot(
        x,
        [100 * r["easy_guards"] for r in rows],
        ":",
        color="tab:gray",
        label="unrelated pairs, with guards",
    )
    ax.axvline(t0, color="black", linewidth=0.8)
    ax.axhline(100 * TARGET_TRAPS, color="tab:red", linewidth=0.6, alpha=0.5)
    ax.axhline(100 * TARGET_HITS, color="tab:blue", linewidth=0.6, alpha=0.5)
    ax.text(t0 + 0.002, 96, f"default {t0:.2f}", fontsize=8)
    ax.set_xlabel("similarity_threshold")
    ax.set_ylabel("pairs served (%)")
    ax.set_ylim(0, 100)
    ax.set_title("fow-cache test half, MiniLM (int8 ONNX): served rate by threshold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pct(r: dict[str, Any]) -> str:
    lo, hi = r["ci95"]
    d = 1 if r["rate"] >= 0.01 or r["served"] == 0 else 3
    return (
        f"{100 * r['rate']:.{d}f}% ({r['served']}/{r['of']}; {100 * lo:.{d}f} to {100 * hi:.{d}f})"
    )


def markdown(result: dict[str, Any]) -> str:
    test, train = result["test"], result["train"]
    t = test["threshold"]
    g, ng = test["guards"], test["no_guards"]
    met_traps = g["traps"]["rate"] <= TARGET_TRAPS
    met_hits = g["should_hit"]["rate"] >= TARGET_HITS
    lines = [
        f"Generated by `make quality` on {result['date']} ({result['machine']}); "
        f"MiniLM (model file sha256 {result['model_sha256'][:12]}…), {result['guards']}.",
        "",
        f"**Test half ({test['pairs']} pairs), default threshold {t:.2f}** — "
        "served rate, (served/pairs; Wilson 95% interval, %):",
        "",
        "| | cosine only | with guards |",
        "|---|---|---|",
        f"| should-hit (near_repeat + paraphrase) | {_pct(ng['should_hit'])} "
        f"| {_pct(g['should_hit'])} |",
        f"| traps (wrong answer served) | {_pct(ng['traps'])} | {_pct(g['traps'])} |",
        f"| unrelated pairs (cross-paired rows) | {_pct(test['easy_negatives']['no_guards'])} "
        f"| {_pct(test['easy_negatives']['guards'])} |",
        "",
        f"Targets (traps ≤ {TARGET_TRAPS:.0%} while should-hit ≥ {TARGET_HITS:.0%}, with guards): "
        f"traps {'met' if met_traps else 'MISSED'} "
        f"({100 * g['traps']['rate']:.1f}%), should-hit {'met' if met_hits else 'MISSED'} "
        f"({100 * g['should_hit']['rate']:.1f}%).",
        "",
        f"AUC, should-hit vs trap scores: {test['auc']['no_guards']:.3f} cosine only, "
        f"{test['auc']['guards']:.3f} with guards (a refused pair scores below every threshold).",
        "",
        "By category, test half, with guards:",
        "",
        "| category | cosine only | with guards |",
        "|---|---|---|",
    ]
    for cat, r in g["by_category"].items():
        lines.append(f"| {cat} | {_pct(ng['by_category'][cat])} | {_pct(r)} |")
    refusals = ", ".join(f"{k} {v}" for k, v in sorted(test["refusals"]["traps"].items()))
    wrongly = ", ".join(f"{k} {v}" for k, v in sorted(test["refusals"]["should_hit"].items()))
    lines += [
        "",
        f"Checks that refused traps (any similarity): {refusals or 'none'}. "
        f"Checks that refused should-hit pairs: {wrongly or 'none'}.",
        "",
        "Threshold sweep (% served). Test half, then the train half's figures with guards:",
        "",
        "| threshold | should-hit | should-hit + guards | traps | traps + guards "
        "| unrelated + guards | train: should-hit + guards | train: traps + guards |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r, tr in zip(result["sweep"], result["train_sweep"], strict=True):
        if round(r["threshold"] * 100) % 2 and r["threshold"] != t:
            continue
        mark = " ←" if r["threshold"] == t else ""
        lines.append(
            f"| {r['threshold']:.2f}{mark} | {100 * r['should_hit']:.1f} "
            f"| {100 * r['should_hit_guards']:.1f} | {100 * r['traps']:.1f} "
            f"| {100 * r['traps_guards']:.1f} | {100 * r['easy_guards']:.2f} "
            f"| {100 * tr['should_hit_guards']:.1f} | {100 * tr['traps_guards']:.1f} |"
        )
    tg, tng = train["guards"], train["no_guards"]
    lines += [
        "",
        "![served rate by threshold](../benchmarks/results/quality-sweep.png)",
        "",
        f"For reference, the train half ({train['pairs']} pairs, which the guards were "
        f"designed on) at {t:.2f}: should-hit {_pct(tng['should_hit'])}, with guards "
        f"{_pct(tg['should_hit'])}; traps {_pct(tng['traps'])}, with guards "
        f"{_pct(tg['traps'])}.",
    ]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} section to fill")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="MiniLM intra-op threads")
    parser.add_argument("--threshold", type=float, default=None, help="default: the cache's")
    parser.add_argument("--no-write", action="store_true", help="print only; write no file")
    args = parser.parse_args()
    t0 = args.threshold if args.threshold is not None else default_threshold()
    halves = _fow.halves(_fow.load_pairs())
    embedder = MiniLM(threads=args.threads)
    guards = NearMissGuards()
    vec = embed_texts([t for p in halves["train"] + halves["test"] for t in (p.a, p.b)], embedder)
    result: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "command": "python benchmarks/quality.py",
        "data": f"fow-cache {_fow.VERSION} (CC BY 4.0), split seed {_fow.SEED}",
        "embedder": embedder.fingerprint,
        "model_sha256": embedder.model_sha256,
        "guards": "checks " + ", ".join(guards.names),
        "targets": {"traps_max": TARGET_TRAPS, "should_hit_min": TARGET_HITS},
    }
    for half in ("train", "test"):
        scored = score(halves[half], vec, guards)
        easy = easy_negatives(halves[half], vec, guards, floor=SWEEP[0])
        result[half] = {"pairs": len(halves[half]), **summarise(scored, t0, easy)}
        result[half]["easy_pairs"] = easy["pairs"]
        result["sweep" if half == "test" else "train_sweep"] = sweep_rows(scored, easy)
    section = markdown(result)
    print(section)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "quality.json").write_text(
            json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        plot(result["sweep"], t0, RESULTS / "quality-sweep.png")
        write_doc(section)
        print(f"\nwrote {RESULTS / 'quality.json'}, quality-sweep.png and {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
