"""Cross-modal retrieval metrics: recall@k and mean/median rank, image->text and text->image.

Several captions may describe one image: image->text counts a hit when ANY of the image's captions ranks
within k (the rank of its best caption), text->image ranks each caption's one image among all images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reprolab.evaluation.evidence import MetricSpec

KS = (1, 5, 10)


def ranks_image_to_text(similarity: np.ndarray, caption_image: Sequence[int]) -> np.ndarray:
    """1-based rank of each image's best-ranked correct caption; similarity is (n_images, n_captions)."""
    sim = np.asarray(similarity, dtype=np.float64)
    owner = np.asarray(caption_image)
    if sim.shape[1] != len(owner):
        raise ValueError(f"similarity has {sim.shape[1]} captions, caption_image names {len(owner)}")
    ranks = np.empty(sim.shape[0], dtype=np.int64)
    for i, row in enumerate(sim):
        correct = owner == i
        if not correct.any():
            raise ValueError(f"image {i} has no caption")
        # Ties count against the model: a wrong caption scoring equal to the best correct one ranks above it.
        ranks[i] = 1 + int((row[~correct] >= row[correct].max()).sum())
    return ranks


def ranks_text_to_image(similarity: np.ndarray, caption_image: Sequence[int]) -> np.ndarray:
    """1-based rank of each caption's image among all images; similarity is (n_images, n_captions)."""
    sim = np.asarray(similarity, dtype=np.float64)
    owner = np.asarray(caption_image)
    cols = sim.T  # (n_captions, n_images)
    correct = cols[np.arange(len(owner)), owner]
    others = cols >= correct[:, None]
    others[np.arange(len(owner)), owner] = False
    return 1 + others.sum(axis=1)


def rank_summary(ranks: np.ndarray, prefix: str, ks: Sequence[int] = KS) -> dict[str, float]:
    out = {f"{prefix}_recall@{k}": float(np.mean(ranks <= k)) for k in ks}
    out[f"{prefix}_median_rank"] = float(np.median(ranks))
    out[f"{prefix}_mean_rank"] = float(np.mean(ranks))
    return out


def retrieval_metrics(
    image_embeddings: np.ndarray, text_embeddings: np.ndarray, caption_image: Sequence[int], ks: Sequence[int] = KS
) -> dict[str, float]:
    """i2t/t2i recall@k, median and mean rank for L2-normalised embeddings.

    caption_image[j] is the index (into image_embeddings) of the image caption j describes.
    """
    sim = np.asarray(image_embeddings, dtype=np.float64) @ np.asarray(text_embeddings, dtype=np.float64).T
    return {
        **rank_summary(ranks_image_to_text(sim, caption_image), "i2t", ks),
        **rank_summary(ranks_text_to_image(sim, caption_image), "t2i", ks),
    }


def chance_recall(k: int, n_images: int) -> float:
    """Expected text->image recall@k of a random ranking (k of n images); also i2t with one caption each."""
    return min(k, n_images) / n_images


HIT_KS = (1, 5, 10)
# The CLIP evaluation's gated metrics (reports/clip/metrics.json); R@10 and ranks stay in evaluation.json.
RETRIEVAL_SPECS = tuple(
    MetricSpec(f"{d}_recall@{k}", "higher", "mean", (f"{d}_hit@{k}",)) for d in ("i2t", "t2i") for k in (1, 5)
)


def retrieval_examples(variant: str, image_ids: Sequence[str], image_embeddings: np.ndarray,
                       text_embeddings: np.ndarray, caption_image: Sequence[int]) -> list[dict]:
    """One evidence row per image: its i2t rank and t2i rank, and hits at 1/5/10 (reprolab.evaluation.evidence).

    An image with several captions gets the mean of its captions' t2i ranks and hits, so the mean over images
    equals the caption-level t2i recall when every image has one caption (the shipped data).
    """
    sim = np.asarray(image_embeddings, dtype=np.float64) @ np.asarray(text_embeddings, dtype=np.float64).T
    owner = np.asarray(caption_image)
    i2t, t2i = ranks_image_to_text(sim, owner), ranks_text_to_image(sim, owner)
    rows = []
    for i, image_id in enumerate(image_ids):
        mine = t2i[owner == i]
        row = {"id": image_id, "variant": variant, "i2t_rank": int(i2t[i]),
               "t2i_rank": int(mine[0]) if len(mine) == 1 else float(mine.mean())}
        for k in HIT_KS:
            row[f"i2t_hit@{k}"] = bool(i2t[i] <= k)
            row[f"t2i_hit@{k}"] = bool(mine[0] <= k) if len(mine) == 1 else float(np.mean(mine <= k))
        rows.append(row)
    return rows
