"""The index stage's output is the exported collections (reprolab.rag.portable), not an engine's folder: two
builds export the same bytes although Qdrant Edge's folders differ, and a folder materialized from the export
answers as the original did."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from reprolab.data.atomic import write_json
from reprolab.errors import ConfigError
from reprolab.rag.documents import DocumentIndex
from reprolab.rag.images import ImageSearch, build_image_collection
from reprolab.rag.manifest import manifest_record
from reprolab.rag.portable import (COLLECTIONS, export_collections, export_digest, index_creators,
                                   load_collections, materialize)
from reprolab.rag.retrieval import HybridRetriever
from reprolab.rag.store import open_client
from tests.test_rag_unit import DOC, FakeClip, HashEmbedding, _config

REPO = Path(__file__).resolve().parents[1]
IMAGES = [{"id": f"art/{i}.jpg", "image": f"art/images/{i}.jpg", "text": f"description {i}"} for i in range(6)]
QUESTIONS = ["Qual é a sede global da Hotmart?", "Como funciona o programa de afiliados?", "reembolso garantia"]


def _build(folder: Path, engine: str = "edge") -> None:
    client = open_client(path=folder, engine=engine)
    try:
        docs = DocumentIndex(client, HashEmbedding(), _config(), embedder_name="hash-64")
        docs.ingest(DOC.read_text(encoding="utf-8"), "docs/hotmart.txt", {"title": "Hotmart"})
        docs.ingest("A sede da Lusitânia Editora fica em Lisboa. Pagamentos por boleto.", "docs/other.txt")
        build_image_collection(client, FakeClip(), IMAGES, folder, "images")
        export_collections(client, ["documents", "images"], folder.parent / "export")
    finally:
        client.close()


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _answers(client) -> list:
    docs = DocumentIndex(client, HashEmbedding(), _config(), embedder_name="hash-64")
    retriever = HybridRetriever(client, HashEmbedding(), docs.collection, _config().retrieval)
    text = [[(p.chunk_id, round(p.score, 6), p.dense_score) for p in retriever.retrieve(q)] for q in QUESTIONS]
    images = [h.id for h in ImageSearch(client, FakeClip(), "images").by_text("description 2", top_k=3)]
    return [text, images, docs.points()]


def test_two_builds_export_the_same_bytes_though_their_engine_folders_differ(tmp_path):
    _build(tmp_path / "a" / "qdrant")
    _build(tmp_path / "b" / "qdrant")
    assert _tree(tmp_path / "a" / "qdrant") != _tree(tmp_path / "b" / "qdrant")  # why the folder is not the output
    assert _tree(tmp_path / "a" / "export") == _tree(tmp_path / "b" / "export")
    assert sorted(_tree(tmp_path / "a" / "export")) == [f"{COLLECTIONS}/documents.jsonl", f"{COLLECTIONS}/images.jsonl"]


@pytest.mark.parametrize("engine", ["local", "edge"])
def test_a_materialized_folder_answers_as_the_original_and_is_reused_while_the_export_is_unchanged(tmp_path, engine):
    _build(tmp_path / "a" / "qdrant", engine)
    export, creators = tmp_path / "a" / "export", index_creators("documents", "images")
    original = open_client(path=tmp_path / "a" / "qdrant", engine=engine)
    expected = _answers(original)
    original.close()

    served = tmp_path / "served"
    assert materialize(export, served, creators, engine) is True
    client = open_client(path=served, engine=engine)
    got = _answers(client)
    # Vectors and payloads come through exactly: every passage found both times has the same dense score.
    dense = [{c: d for c, _, d in hits} for hits in expected[0]]
    assert all(dense[i][c] == d for i, hits in enumerate(got[0]) for c, _, d in hits if c in dense[i])
    assert all(dense) and got[1:] == expected[1:] and expected[2] > 20
    client.close()
    if engine == "local":  # local mode breaks ties in insertion order: two materializations answer identically
        assert materialize(export, tmp_path / "again", creators, engine) is True
        again = open_client(path=tmp_path / "again", engine=engine)
        assert _answers(again) == got
        again.close()

    client = open_client(path=served, engine=engine)
    DocumentIndex(client, HashEmbedding(), _config(), embedder_name="hash-64").ingest("Documento novo.", "docs/new.txt")
    client.close()
    assert materialize(export, served, creators, engine) is False  # same export: the ingested document stays
    client = open_client(path=served, engine=engine)
    assert _answers(client)[2] == expected[2] + 1
    client.close()

    (export / COLLECTIONS / "images.jsonl").write_text(
        "".join(line + "\n" for line in (export / COLLECTIONS / "images.jsonl").read_text().splitlines()[:3]))
    assert materialize(export, served, creators, engine) is True  # a new export: rebuilt from it, whole
    client = open_client(path=served, engine=engine)
    assert client.count("images").count == 3 and _answers(client)[2] == expected[2]
    client.close()


def test_loading_refuses_a_missing_export_and_the_command_line_loads_it(tmp_path):
    with pytest.raises(ConfigError, match="no exported collections"):
        export_digest(tmp_path)
    client = open_client(path=tmp_path / "q")
    with pytest.raises(Exception, match="index stage writes it"):
        load_collections(client, tmp_path, index_creators("documents", None))
    client.close()

    _build(tmp_path / "a" / "qdrant")
    export = tmp_path / "a" / "export"
    write_json(export / "manifest.json", manifest_record(_config(), 64, collections={"documents": {}, "images": {}}))
    out = subprocess.run([sys.executable, "-m", "reprolab.rag.portable", "load", str(export),
                          "--qdrant-path", str(tmp_path / "cli")], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and "built" in out.stdout, out.stderr
    client = open_client(path=tmp_path / "cli")
    assert {c.name for c in client.get_collections().collections} == {"documents", "images"}
    assert client.count("images").count == len(IMAGES)
    client.close()


def test_the_service_serves_the_exported_index_materialized_at_start(tmp_path):
    """What `make serve` does: index/ holds only the manifest and the export; the service builds its embedded
    folder from them and answers from the very first query, with no ingest."""
    import httpx

    from reprolab.config import load_section
    from reprolab.rag.build import IndexConfig
    from reprolab.rag.embedding import embedding_dim, load_text_embedder
    from tests.test_services_http import Service

    cfg = load_section("index", IndexConfig, REPO / "params.yaml")
    embedder = load_text_embedder(cfg.rag.text_embedder)
    index = tmp_path / "index"
    client = open_client(path=tmp_path / "build", engine="local")
    try:
        DocumentIndex(client, embedder, cfg.rag).ingest(DOC.read_text(encoding="utf-8"), "docs/hotmart.txt")
        export_collections(client, [cfg.rag.documents_collection], index)
    finally:
        client.close()
    write_json(index / "manifest.json", manifest_record(cfg.rag, embedding_dim(embedder)))
    served = tmp_path / "served"
    svc = Service("services.app:app", {"QDRANT_PATH": str(served), "INDEX_MANIFEST": str(index / "manifest.json"),
                                       "CLIP_MODEL_DIR": str(tmp_path / "no-clip")}, tmp_path)
    try:
        svc.wait()
        body = httpx.post(svc.url + "/query", json={"question": "Qual é a sede global da Hotmart?",
                                                    "generate": False}, timeout=60).json()
        assert body["passages"][0]["document_id"] == "docs/hotmart.txt" and "Amsterdã" in body["answer"]
    finally:
        svc.stop()
    assert (served / ".materialized-from").read_text().split()[1] == export_digest(index)
    assert sorted(p.name for p in index.iterdir()) == ["collections", "manifest.json"]  # the DVC output untouched
