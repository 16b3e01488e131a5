"""The index stage's library half on the real corpus (both shipped documents): collections + manifest, and
hit@5 >= 0.9 on the reporting half's Portuguese questions with the embedded default (a fake CLIP stands in for
models/clip, which only changes the image side)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reprolab.config import load_section
from reprolab.rag import build as build_module
from reprolab.evaluation.evidence import evaluate_variants
from reprolab.evaluation.rag import RAG_SPECS
from reprolab.rag.build import IndexConfig, build, evaluate
from reprolab.rag.manifest import IndexManifest

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
    # The DVC output is the manifest and the exported points, nothing of an engine's folder or the build's scratch.
    assert sorted(str(p.relative_to(tmp_path / "index")) for p in (tmp_path / "index").rglob("*")) == [
        "collections", "collections/documents.jsonl", "collections/images.jsonl", "manifest.json"]
    assert json.loads((tmp_path / "index/manifest.json").read_text()) == manifest
    assert [p.name for p in tmp_path.iterdir()] == ["index"]  # no staging folder left beside it
    first = {p.name: p.read_bytes() for p in (tmp_path / "index/collections").iterdir()}
    build(cfg, CORPUS, SPLITS, tmp_path / "index")  # a rebuild: the same bytes
    assert {p.name: p.read_bytes() for p in (tmp_path / "index/collections").iterdir()} == first

    served = IndexManifest.model_validate(manifest)  # what the services will read back
    assert served.rag == cfg.rag and served.embedder.dim == 384
    assert sorted(d["id"] for d in manifest["documents"]) == ["docs/como-funciona-hotmart.txt",
                                                             "docs/dom-casmurro-capitulos-1-10.txt"]

    # The served backend only: the compared local answerer takes ~4 min a pass (its committed rows are checked
    # against evaluation.json by test_evidence).
    cfg = cfg.model_copy(update={"compare_backends": []})
    rows, timings = evaluate(cfg, CORPUS, tmp_path / "index")
    again, _ = evaluate(cfg, CORPUS, tmp_path / "index")
    assert json.dumps(again) == json.dumps(rows)  # the DVC outputs rebuild byte for byte: no timing in them
    assert len(timings) == len(rows) and all(t["latency_ms"] >= 0 for t in timings)
    ev = evaluate_variants(RAG_SPECS, rows)
    head = ev[cfg.rag.answer.backend]
    assert head["hit@5"]["value"] >= 0.9 and head["hit@5"]["low"] <= head["hit@5"]["value"]
    assert head["hit@1"]["value"] <= head["hit@5"]["value"] and 0 < head["mrr"]["value"] <= 1
    assert {f"{cfg.rag.answer.backend}_tune", f"{cfg.rag.answer.backend}_en"} <= set(ev)
    assert len({r["id"] for r in rows}) == len(rows)  # one backend: one row per question


def test_the_committed_evaluation_scores_every_compared_backend_on_the_reporting_half():
    cfg = load_section("index", IndexConfig, REPO / "params.yaml")
    evaluation = json.loads((REPO / "reports/rag/evaluation.json").read_text())
    for backend in cfg.compare_backends:
        for variant in (backend, f"{backend}_en"):
            assert variant in evaluation["variants"], variant
            # reporting half only: as many questions as the served backend's reporting rows
            head = cfg.rag.answer.backend + variant.removeprefix(backend)
            assert evaluation["variants"][variant]["hit@5"]["n"] == evaluation["variants"][head]["hit@5"]["n"]
        assert f"{backend}_tune" not in evaluation["variants"]
