"""Retrieval metrics: ranks, recall@k, several captions per image, ties."""

from __future__ import annotations

import numpy as np
import pytest

from reprolab.evaluation.evidence import evaluate_variants
from reprolab.evaluation.retrieval import (
    RETRIEVAL_SPECS,
    chance_recall,
    ranks_image_to_text,
    ranks_text_to_image,
    retrieval_examples,
    retrieval_metrics,
)


def test_perfect_embeddings_give_recall_one_and_rank_one():
    emb = np.eye(4, dtype=np.float32)
    m = retrieval_metrics(emb, emb, [0, 1, 2, 3])
    assert m["i2t_recall@1"] == m["t2i_recall@1"] == 1.0
    assert m["i2t_median_rank"] == m["t2i_median_rank"] == 1.0


def test_ranks_on_a_known_similarity_matrix():
    # rows: images, columns: captions (caption j describes image j)
    sim = np.array([[0.1, 0.9, 0.0], [0.2, 0.8, 0.1], [0.9, 0.0, 0.3]])
    assert ranks_image_to_text(sim, [0, 1, 2]).tolist() == [2, 1, 2]
    assert ranks_text_to_image(sim, [0, 1, 2]).tolist() == [3, 2, 1]
    m = retrieval_metrics(np.eye(3), sim.T, [0, 1, 2])  # eye @ sim -> sim
    assert m["i2t_recall@1"] == pytest.approx(1 / 3)
    assert m["t2i_recall@1"] == pytest.approx(1 / 3)
    assert m["i2t_mean_rank"] == pytest.approx(5 / 3)


def test_any_correct_caption_counts_for_image_to_text():
    # image 0 has captions 0 and 2; caption 2 is its best match although caption 0 ranks last
    sim = np.array([[0.0, 0.5, 0.9], [0.1, 0.9, 0.2]])
    owner = [0, 1, 0]
    assert ranks_image_to_text(sim, owner).tolist() == [1, 1]
    assert ranks_text_to_image(sim, owner).tolist() == [2, 1, 1]


def test_ties_count_against_the_model():
    sim = np.ones((3, 3))
    assert ranks_image_to_text(sim, [0, 1, 2]).tolist() == [3, 3, 3]
    assert ranks_text_to_image(sim, [0, 1, 2]).tolist() == [3, 3, 3]


def test_image_without_caption_is_an_error():
    with pytest.raises(ValueError, match="no caption"):
        ranks_image_to_text(np.ones((2, 1)), [0])


def test_random_embeddings_sit_near_chance():
    rng = np.random.default_rng(0)
    n = 400
    m = retrieval_metrics(rng.normal(size=(n, 16)), rng.normal(size=(n, 16)), np.arange(n))
    assert abs(m["t2i_recall@5"] - chance_recall(5, n)) < 0.03
    assert chance_recall(5, 32) == pytest.approx(5 / 32)
    assert chance_recall(10, 4) == 1.0


def test_per_image_evidence_rows_give_back_the_recall_of_retrieval_metrics():
    rng = np.random.default_rng(0)
    images, texts = rng.normal(size=(12, 5)), rng.normal(size=(12, 5))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    owner = list(range(12))
    rows = retrieval_examples("finetuned", [f"{i}.jpg" for i in range(12)], images, texts, owner)
    assert [r["id"] for r in rows] == [f"{i}.jpg" for i in range(12)]
    assert rows[0].keys() >= {"variant", "i2t_rank", "t2i_rank", "i2t_hit@5", "t2i_hit@1"}
    summary = retrieval_metrics(images, texts, owner)
    estimates = evaluate_variants(RETRIEVAL_SPECS, rows)["finetuned"]
    assert set(estimates) == {"i2t_recall@1", "i2t_recall@5", "t2i_recall@1", "t2i_recall@5"}
    for name, est in estimates.items():
        assert est["value"] == pytest.approx(summary[name], abs=1e-6) and est["n"] == 12  # to_dict rounds
        assert est["low"] <= est["value"] <= est["high"]


def test_an_image_with_two_captions_averages_its_text_to_image_hits():
    sim_images, sim_texts = np.eye(2), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # caption 2 matches image 0
    rows = retrieval_examples("v", ["a.jpg", "b.jpg"], sim_images, sim_texts, [0, 1, 1])
    assert rows[1]["i2t_rank"] == 1 and rows[1]["t2i_rank"] == 1.5 and rows[1]["t2i_hit@1"] == 0.5
