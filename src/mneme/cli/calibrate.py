"""``mneme calibrate``: a thin wrapper of ``mneme.tools.calibrate.find_threshold``."""

from __future__ import annotations

import json

import click

from mneme.cli.app import cli, examples
from mneme.cli.embedders import load_embedder
from mneme.cli.target import TargetError

__all__: list[str] = []


def _pairs(path: str) -> list[tuple[str, str]]:
    pairs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pairs.append((str(row["a"]), str(row["b"])))
            except (ValueError, KeyError, TypeError):
                raise TargetError(
                    f"{path}:{number}: expected a JSON object with fields a and b"
                ) from None
    return pairs


@cli.command(
    epilog=examples(
        "mneme calibrate paraphrases.jsonl distractors.jsonl",
        "mneme calibrate p.jsonl d.jsonl --embedder mypkg.models:load --min-precision 0.95",
    )
)
@click.argument("paraphrases", type=click.Path(exists=True, dir_okay=False))
@click.argument("distractors", type=click.Path(exists=True, dir_okay=False))
@click.option("--embedder", help="module:factory returning your embedder (default: hashing).")
@click.option("--dim", default=384, show_default=True, help="Dimension of the default embedder.")
@click.option(
    "--target-metric",
    type=click.Choice(["f1", "precision", "recall"]),
    default="f1",
    show_default=True,
)
@click.option("--min-precision", type=float, help="Only thresholds with at least this precision.")
@click.option("--min-recall", type=float, help="Only thresholds with at least this recall.")
@click.option("--vector-dtype", default="float32", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def calibrate(
    paraphrases: str,
    distractors: str,
    embedder: str | None,
    dim: int,
    target_metric: str,
    min_precision: float | None,
    min_recall: float | None,
    vector_dtype: str,
    as_json: bool,
) -> None:
    """Choose similarity_threshold from labelled pairs: PARAPHRASES should hit,
    DISTRACTORS should miss (JSON lines with fields a and b)."""
    from mneme.tools.calibrate import find_threshold

    result = find_threshold(
        _pairs(paraphrases),
        _pairs(distractors),
        load_embedder(embedder, dim),
        target_metric=target_metric,
        min_precision=min_precision,
        min_recall=min_recall,
        vector_dtype=vector_dtype,
    )
    doc = {
        "threshold": result.threshold,
        "precision": result.precision,
        "recall": result.recall,
        "f1": result.f1,
    }
    if as_json:
        click.echo(json.dumps(doc))
        return
    click.echo(f"similarity_threshold = {result.threshold:.2f}")
    click.echo(
        f"precision {result.precision:.3f}, recall {result.recall:.3f}, f1 {result.f1:.3f} "
        f"(best {target_metric} of {len(result.pr_curve)} thresholds)"
    )
