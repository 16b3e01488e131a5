"""The embedded engine of `make serve` and the index stage: Qdrant Edge (reprolab.rag.edge.EdgeClient) behaves
as qdrant-client's local mode does for everything this project calls, and scores the same."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient, models

from reprolab.errors import ConfigError
from reprolab.rag.documents import DocumentIndex
from reprolab.rag.edge import EdgeClient
from reprolab.rag.retrieval import HybridRetriever
from reprolab.rag.sparse import SPARSE_CHANNELS, analyzer_for
from reprolab.rag.store import DENSE, open_client
# The document-index and hybrid-search behaviour tests, run here again on the Edge engine (the `index` fixture below).
from tests.test_rag_unit import (DOC, HashEmbedding, _config,  # noqa: F401
                                 test_a_collection_of_another_embedder_or_dimension_is_refused,
                                 test_a_dropped_collection_answers_empty_and_a_new_one_is_checked_again,
                                 test_hybrid_search_runs_inside_qdrant_with_filters_and_sees_new_documents_at_once,
                                 test_ingest_is_idempotent_and_a_change_replaces_chunks)

QUESTIONS = ["Qual é a sede global da Hotmart?", "Quais formas de pagamento são aceitas?",
             "Como funciona o programa de afiliados?", "Hotmart Club área de membros", "reembolso garantia prazo"]


@pytest.fixture
def index(tmp_path):
    client = EdgeClient(tmp_path / "edge")
    yield DocumentIndex(client, HashEmbedding(), _config(), embedder_name="hash-64")
    client.close()


def _both(tmp_path):
    local, edge = QdrantClient(":memory:"), EdgeClient(tmp_path / "edge")
    indexes = [DocumentIndex(c, HashEmbedding(), _config(), embedder_name="hash-64") for c in (local, edge)]
    for ix in indexes:
        ix.ingest(DOC.read_text(encoding="utf-8"), "docs/hotmart.txt", {"lang": "pt"})
        ix.ingest("A sede da Lusitânia Editora fica em Lisboa. Pagamentos por boleto.", "docs/other.txt")
    return indexes


def test_edge_scores_every_channel_as_local_mode_does(tmp_path):
    local, edge = _both(tmp_path)
    analyzer = analyzer_for("portuguese", 4)
    assert local.points() == edge.points() > 20
    for question in QUESTIONS:
        sparse = analyzer.encode(question, question=True)
        queries = {DENSE: HashEmbedding().get_query_embedding(question)}
        queries.update({c: models.SparseVector(indices=sparse[c].indices, values=sparse[c].values)
                        for c in SPARSE_CHANNELS})
        for using, query in queries.items():
            got = [{str(p.id): round(p.score, 4) for p in ix.client.query_points(ix.collection, query=query,
                                                                                 using=using, limit=1000).points}
                   for ix in (local, edge)]
            assert got[0] == got[1] and got[0], (question, using)  # same points, same scores (IDF included)
    edge.client.close()


def test_hybrid_retrieval_on_edge_matches_local_mode_up_to_ties(tmp_path):
    local, edge = _both(tmp_path)
    for question in QUESTIONS:
        got = [HybridRetriever(ix.client, ix.embedder, ix.collection, _config().retrieval, documents=ix)
               .retrieve(question, 5, filters={"lang": "pt"}) for ix in (local, edge)]
        # RRF of equal per-channel scores: the same fused scores; points tied on a channel may swap ranks.
        assert [p.document_id for p in got[1]] == ["docs/hotmart.txt"] * 5
        dense = [{p.chunk_id: p.dense_score for p in g} for g in got]
        common = dense[0].keys() & dense[1].keys()
        assert len(common) >= 3 and all(dense[0][c] == pytest.approx(dense[1][c], abs=1e-5) for c in common)
    edge.client.close()


def test_edge_state_persists_one_process_at_a_time_and_a_local_mode_folder_is_refused(tmp_path):
    client = open_client(path=tmp_path / "q")
    first = DocumentIndex(client, HashEmbedding(), _config()).ingest("Um texto. " * 50, "d", {"k": "v"})
    with pytest.raises(ConfigError, match="in use by another process"):
        open_client(path=tmp_path / "q")
    client.close()
    client = open_client(path=tmp_path / "q")
    reopened = DocumentIndex(client, HashEmbedding(), _config())
    assert [(d.document_id, d.chunks, d.metadata) for d in reopened.list()] == [("d", first.chunks, {"k": "v"})]
    assert reopened.ingest("Um texto. " * 50, "d", {"k": "v"}).status == "unchanged"
    client.close()

    QdrantClient(path=str(tmp_path / "old")).close()  # a folder of qdrant-client's local mode
    with pytest.raises(ConfigError, match="local-mode"):
        EdgeClient(tmp_path / "old")


def test_an_unnamed_vector_collection_on_edge(tmp_path):
    client = EdgeClient(tmp_path / "edge")
    client.create_collection("images", vectors_config=models.VectorParams(size=3, distance=models.Distance.COSINE))
    ids = ["00000000-0000-0000-0000-00000000000" + str(i) for i in range(3)]
    client.upsert("images", points=[models.PointStruct(id=i, vector=[1.0, float(n), 0.0], payload={"n": n})
                                    for n, i in enumerate(ids)])
    hits = client.query_points("images", query=[1.0, 0.0, 0.0], limit=2, with_payload=True).points
    assert [h.payload["n"] for h in hits] == [0, 1] and hits[0].score == pytest.approx(1.0)
    assert client.retrieve("images", ids[2:], with_vectors=True)[0].vector == pytest.approx([5 ** -0.5, 2 * 5 ** -0.5, 0.0])  # cosine: stored normalised
    assert client.get_collection("images").config.params.vectors.size == 3
    pages, offset = [], None
    while True:  # scroll pages: the next offset of one page is where the next starts
        page, offset = client.scroll("images", limit=2, offset=offset, with_payload=True)
        pages.append([p.payload["n"] for p in page])
        if offset is None:
            break
    assert pages == [[0, 1], [2]]
    assert client.count("images").count == 3 and client.delete_collection("images")
    assert not client.collection_exists("images")
    client.close()


# --- the packaged embedder on onnxruntime ---------------------------------------------------------------------
def test_the_packaged_embedder_runs_on_onnx_and_equals_torch(tmp_path):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from reprolab.rag.embedding import (OnnxSentenceEmbedding, QueryBatcher, load_text_embedder, packaged_model_dir,
                                        token_counter)

    onnx = load_text_embedder()
    assert isinstance(onnx, OnnxSentenceEmbedding)
    torch_model = SentenceTransformer(str(packaged_model_dir()), device="cpu")
    text = DOC.read_text(encoding="utf-8")
    texts = QUESTIONS + [text[:400], text[2000:3500], text]  # short, a chunk, and one past the 256-token limit
    ref = torch_model.encode(texts, normalize_embeddings=True, batch_size=4)
    got = np.asarray(onnx.get_text_embedding_batch(texts))
    assert np.abs(got - ref).max() < 1e-6  # one runtime on both sides of the index; and torch's vectors, to 1e-6
    assert np.abs(np.asarray(QueryBatcher(onnx).embed(QUESTIONS[0])) - ref[0]).max() < 1e-6
    assert len(token_counter(onnx)(text)) == len(torch_model.tokenizer.encode(text, add_special_tokens=False))
