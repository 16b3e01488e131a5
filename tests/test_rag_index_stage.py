"""The index stage's library half on the real corpus: collections + manifest, and hit@5 >= 0.9 on the labelled
set with the embedded default (a fake CLIP stands in for models/clip, which only changes the image side)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reprolab.config import load_section
from reprolab.rag import build as build_module
from reprolab.rag.build import IndexConfig, build, evaluate

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_index_build_and_evaluation(tmp_path, monkeypatch, sample_data):
    from tests.test_rag_unit import FakeClip

    CORPUS, SPLITS = sample_data

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(build_module, "load_clip", lambda model_dir, required=False: FakeClip())
    cfg = load_section("index", IndexConfig, REPO / "params.yaml")
    manifest = build(cfg, CORPUS, SPLITS, tmp_path / "index")
    docs = manifest["collections"][cfg.rag.documents_collection]
    assert docs["points"] == sum(d["chunks"] for d in manifest["documents"]) > 50 and docs["dim"] == 384
    assert manifest["collections"][cfg.rag.images_collection]["points"] == len(manifest["images"]) == 200
    assert (tmp_path / "index/qdrant").is_dir() and not (tmp_path / "index.tmp").exists()

    metrics, rows = evaluate(cfg, CORPUS, tmp_path / "index")
    assert metrics["retrieval"]["hit@5"] >= 0.9
    assert metrics["retrieval"]["hit@1"] <= metrics["retrieval"]["hit@5"]
    assert 0 < metrics["retrieval"]["mrr"] <= 1
    assert set(metrics["answers"]) >= {"key_fact_recall", "refusal_accuracy"}
    assert len(rows) == metrics["questions"]["answerable"] + metrics["questions"]["unanswerable"]
