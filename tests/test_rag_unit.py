"""Fast unit tests of the RAG library: extraction, fusion, lexical matching, the document index (upserts,
rollback, persistence) on in-memory Qdrant with a small fake embedder, image search, evaluation metrics."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from llama_index.core.embeddings import BaseEmbedding
from qdrant_client import QdrantClient

from reprolab.evaluation.rag import (RagOutcome, evaluate_rag, first_hit_rank, key_fact_recall, load_labelled_set,
                                     passage_hits_evidence)
from reprolab.rag.config import ChunkingConfig, RagConfig
from reprolab.rag.documents import DocumentIndex, chunk_id
from reprolab.rag.errors import DocumentNotFound, InputError, UnprocessableDocument, UnsupportedType
from reprolab.rag.extract import extract_text
from reprolab.rag.images import ImageSearch, build_image_collection
from reprolab.rag.retrieval import HybridRetriever, LexicalIndex, reciprocal_rank_fusion

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "samples" / "docs" / "como-funciona-hotmart.txt"


class HashEmbedding(BaseEmbedding):
    """Bag of hashed words, L2-normalised: deterministic, instant, and words in common mean similarity."""

    def _vec(self, text: str) -> list[float]:
        v = np.zeros(64)
        for w in text.lower().split():
            v[int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1
        n = np.linalg.norm(v)
        return (v / n if n else v).tolist()

    def _get_text_embedding(self, text): return self._vec(text)
    def _get_query_embedding(self, query): return self._vec(query)
    async def _aget_query_embedding(self, query): return self._vec(query)


def _config(**chunking) -> RagConfig:
    return RagConfig(chunking=ChunkingConfig(chunk_size=chunking.get("size", 64), chunk_overlap=8))


@pytest.fixture
def index(tmp_path):
    client = QdrantClient(":memory:")
    yield DocumentIndex(client, HashEmbedding(), _config(), tmp_path / "docstore.json")
    client.close()


# --- extraction -------------------------------------------------------------------------------------------------
def test_extract_text_kinds_and_errors():
    assert extract_text("Olá mundo".encode(), "a.txt", "text/plain") == "Olá mundo"
    html = b"<html><head><title>t</title><script>x()</script></head><body><p>Um</p><p>Dois &amp; tr\xc3\xaas</p></body></html>"
    assert extract_text(html, "a.html", "text/html") == "Um\n\nDois & três"
    assert extract_text(b"# T\n\ntexto", "a.md") == "# T\n\ntexto"
    with pytest.raises(InputError, match="0 bytes"):
        extract_text(b"", "a.txt")
    with pytest.raises(UnprocessableDocument, match="binary"):
        extract_text((REPO / "samples/art/images/0.jpg").read_bytes(), "photo.txt")
    with pytest.raises(InputError, match="UTF-8"):
        extract_text("ação".encode("latin-1"), "a.txt")
    with pytest.raises(UnsupportedType, match="unsupported type"):
        extract_text(b"x", "a.docx")
    with pytest.raises(UnsupportedType, match="does not match"):
        extract_text(b"x", "a.txt", "image/png")
    with pytest.raises(UnprocessableDocument, match="not a PDF"):
        extract_text(b"hello", "a.pdf", "application/pdf")


def test_pdf_without_text_is_refused():
    from pypdf import PdfWriter

    writer, buf = PdfWriter(), io.BytesIO()
    writer.add_blank_page(width=100, height=100)
    writer.write(buf)
    with pytest.raises(UnprocessableDocument, match="no extractable text"):
        extract_text(buf.getvalue(), "scan.pdf", "application/pdf")


# --- fusion and lexical matching ----------------------------------------------------------------------------------
def test_reciprocal_rank_fusion_rewards_agreement():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "a"]], k=60)
    assert max(fused, key=fused.get) == "b"
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 63)
    weighted = reciprocal_rank_fusion([["a"], ["b"]], k=10, weights=[0.5, 1.0])
    assert weighted["b"] > weighted["a"]


class _Node:
    def __init__(self, text, node_id):
        self.text, self.node_id, self.metadata = text, node_id, {}

    def get_content(self):
        return self.text


def test_lexical_index_stems_portuguese_and_chargrams_match_glued_words():
    nodes = [_Node("As formas de pagamento aceitas incluem boleto e Pix.", "a"),
             _Node("É isso que oClub Salesdá a você: ofertas especiais.", "b"),
             _Node("A sede fica em Amsterdã.", "c")]
    words = LexicalIndex("portuguese", "words")
    words.build(nodes)
    assert words.search("Quais pagamentos são aceitos?", 3)[0][0].node_id == "a"  # pagamento ~ pagamentos
    assert words.search("Qual é a função do Club Sales?", 3) == []  # glued words defeat word matching
    grams = LexicalIndex("portuguese", "chargrams")
    grams.build(nodes)
    assert grams.search("Qual é a função do Club Sales?", 3)[0][0].node_id == "b"
    assert "qual" not in words.terms("Qual é a sede?", question=True)


# --- the document index -----------------------------------------------------------------------------------------
def test_ingest_is_idempotent_and_a_change_replaces_chunks(index, tmp_path):
    text = DOC.read_text(encoding="utf-8")[:6000]
    first = index.ingest(text, "docs/a.txt", {"title": "A"})
    assert first.status == "created" and first.chunks > 3 and first.points_total == first.chunks
    again = index.ingest(text, "docs/a.txt", {"title": "A"})
    assert again.status == "unchanged" and again.points_total == first.points_total
    other = index.ingest("Outro documento, curto.", "docs/b.txt")
    assert other.points_total == first.chunks + 1
    changed = index.ingest(text[:1500], "docs/a.txt", {"title": "A"})
    assert changed.status == "updated" and changed.points_total == changed.chunks + 1
    assert index.get("docs/a.txt").chunks == changed.chunks  # no orphans of the long version
    ids = {p.id for p in index.client.scroll(index.collection, limit=1000)[0]}
    assert chunk_id("docs/a.txt", 0) in ids and chunk_id("docs/a.txt", first.chunks - 1) not in ids
    assert index.delete("docs/a.txt") == changed.chunks
    assert index.points() == 1 and [d.document_id for d in index.list()] == ["docs/b.txt"]
    with pytest.raises(DocumentNotFound):
        index.get("docs/a.txt")


def test_docstore_persists_so_a_restart_still_dedups(tmp_path):
    client = QdrantClient(path=str(tmp_path / "q"))
    first = DocumentIndex(client, HashEmbedding(), _config(), tmp_path / "ds.json").ingest("Um texto. " * 50, "d")
    client.close()
    client = QdrantClient(path=str(tmp_path / "q"))
    reopened = DocumentIndex(client, HashEmbedding(), _config(), tmp_path / "ds.json")
    result = reopened.ingest("Um texto. " * 50, "d")
    assert result.status == "unchanged" and result.points_total == first.points_total
    client.close()


def test_a_failed_write_leaves_no_trace(index, monkeypatch):
    index.ingest("Versão antiga do documento. " * 30, "docs/x.txt")
    base = index.ingest("Outro.", "docs/y.txt").points_total - index.get("docs/x.txt").chunks

    from llama_index.vector_stores.qdrant import QdrantVectorStore

    original_add = QdrantVectorStore.add

    def broken_add(self, nodes, **kwargs):
        original_add(self, nodes[: len(nodes) // 2])  # half the chunks land, then the connection drops
        raise ConnectionError("qdrant went away")

    monkeypatch.setattr(QdrantVectorStore, "add", broken_add)
    with pytest.raises(ConnectionError):
        index.ingest("Versão nova. " * 30, "docs/x.txt")
    monkeypatch.undo()
    with pytest.raises(DocumentNotFound):
        index.get("docs/x.txt")
    assert index.points() == base  # neither the old nor a partial new version
    assert index.docstore.get_document_hash("docs/x.txt") is None


def test_hybrid_retriever_finds_and_filters(index):
    index.ingest(DOC.read_text(encoding="utf-8"), "docs/hotmart.txt", {"lang": "pt"})
    index.ingest("The headquarters are in Lisbon.", "docs/other.txt", {"lang": "en"})
    retriever = HybridRetriever(index.client, index.embedder, index.collection, _config().retrieval, documents=index)
    top = retriever.retrieve("Qual é a sede global da Hotmart?", 5)
    assert any("Amsterdã" in p.text for p in top)
    only_en = retriever.retrieve("headquarters", 5, filters={"lang": "en"})
    assert only_en and all(p.document_id == "docs/other.txt" for p in only_en)


# --- images -----------------------------------------------------------------------------------------------------
class FakeClip:
    dim = 8

    def _v(self, key: str):
        v = np.random.default_rng(int(hashlib.md5(key.encode()).hexdigest()[:8], 16)).normal(size=8)
        return (v / np.linalg.norm(v)).astype(np.float32)

    def encode_images(self, images):
        return np.stack([self._v(Path(str(getattr(i, "filename", i))).name) for i in images])

    def encode_texts(self, texts):
        return np.stack([self._v(t) for t in texts])


def test_image_collection_search_by_image_and_text(tmp_path):
    client = QdrantClient(":memory:")
    records = [{"id": f"art/{i}.jpg", "image": f"art/images/{i}.jpg", "text": f"description {i}"} for i in range(5)]
    assert build_image_collection(client, FakeClip(), records, tmp_path, "images") == 5
    search = ImageSearch(client, FakeClip(), "images")
    hit = search.by_image(tmp_path / "art/images/3.jpg", top_k=2)[0]
    assert hit.id == "art/3.jpg" and hit.description == "description 3" and hit.score == pytest.approx(1.0, abs=1e-5)
    assert len(search.by_text("3.jpg", top_k=3)) == 3
    client.close()


# --- evaluation -------------------------------------------------------------------------------------------------
def test_labelled_set_is_consistent_with_the_document():
    questions = load_labelled_set(REPO / "samples/qa/hotmart_labelled.json", DOC.read_text(encoding="utf-8"))
    answerable = [q for q in questions if q.answerable]
    assert len(answerable) == 15 and len(questions) - 15 >= 5
    assert all(q.key_facts for q in answerable)
    perguntas = [line.strip() for line in (REPO / "samples/qa/perguntas.txt").read_text().splitlines() if line.strip().endswith("?")]
    assert [q.question for q in answerable][0] == perguntas[0]


def test_evidence_hits_and_key_facts():
    gold = ["com sede em Amsterdã, nos Países Baixos (Holanda)"]
    assert passage_hits_evidence("A Hotmart ... com sede em  Amsterdã, nos Países Baixos (Holanda), e", gold)
    assert passage_hits_evidence("... com sede em Amsterdã, nos Paí", gold)  # cut by a chunk boundary: > half
    assert not passage_hits_evidence("sede em Amsterdã", gold)
    assert first_hit_rank(["x", "y com sede em Amsterdã, nos Países Baixos (Holanda)"], gold) == 2
    assert key_fact_recall("Taxa de 9,9% + R$ 1", [["9.9%", "9,9%"], ["R$ 1"], ["2011"]]) == pytest.approx(2 / 3)


def test_evaluate_rag_metrics(tmp_path):
    from reprolab.evaluation.rag import LabelledQuestion

    qs = [LabelledQuestion("a", "A?", True, ["alpha beta"], [["alpha"]]),
          LabelledQuestion("b", "B?", True, ["gamma delta"], [["gamma"]]),
          LabelledQuestion("u", "U?", False)]
    answers = {"A?": RagOutcome(["zzz", "alpha beta"], "alpha", False),
               "B?": RagOutcome(["zzz"], "-", True),
               "U?": RagOutcome([], "não", True)}
    metrics, rows = evaluate_rag(qs, answers.__getitem__)
    assert metrics["retrieval"] == {"hit@1": 0.0, "hit@5": 0.5, "mrr": 0.25}
    assert metrics["answers"]["key_fact_recall"] == 0.5 and metrics["answers"]["refusal_accuracy"] == 1.0
    assert json.dumps(metrics)  # flat and serialisable
