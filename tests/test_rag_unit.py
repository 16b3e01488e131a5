"""Fast unit tests of the RAG library: extraction, the Portuguese sparse analysis, the document index (upserts,
rollback, state in Qdrant) on in-memory Qdrant with a small fake embedder, hybrid search inside Qdrant, the
index manifest, image search, evaluation rows and metrics."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from llama_index.core.embeddings import BaseEmbedding
from qdrant_client import QdrantClient

from reprolab.errors import ConfigError
from reprolab.evaluation.evidence import evaluate_variants
from reprolab.evaluation.rag import (RAG_SPECS, LabelledQuestion, RagOutcome, evaluate_rag, latency_p50, first_hit_rank,
                                     key_fact_recall, load_labelled_set, passage_hits_evidence)
from reprolab.rag.answer import UNSURE, Answerer
from reprolab.rag.config import AnswerConfig, ChunkingConfig, RagConfig
from reprolab.rag.documents import DocumentIndex, check_document_id, chunk_id, id_from_filename
from reprolab.rag.errors import DocumentNotFound, FeatureUnavailable, IndexMismatch, InputError, UnprocessableDocument, UnsupportedType
from reprolab.rag.extract import extract_text
from reprolab.rag.images import ImageSearch, build_image_collection
from reprolab.rag.manifest import load_manifest, manifest_record, served_config
from reprolab.rag.retrieval import HybridRetriever, Passage
from reprolab.rag.sparse import Analyzer, term_index

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
def index():
    client = QdrantClient(":memory:")
    yield DocumentIndex(client, HashEmbedding(), _config(), embedder_name="hash-64")
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


# --- the sparse analysis -----------------------------------------------------------------------------------------
def test_analyzer_stems_portuguese_drops_question_words_and_hashes_stably():
    a = Analyzer("portuguese")
    assert a.terms("Quais pagamentos são aceitos?", question=True) == a.terms("pagamento aceito")  # stems meet
    assert "qual" not in a.terms("Qual é a sede?", question=True)
    doc = a.encode("boleto boleto Pix")
    assert len(doc["words"].indices) == 2 and max(doc["words"].values) > 1.0  # term frequency, saturated
    question = a.encode("boleto boleto?", question=True)
    assert question["words"].values == [1.0]  # a repeated question word asks once
    assert term_index("boleto") == __import__("zlib").crc32(b"boleto")  # the same in every process
    assert set(a.encode("oClub Salesdá")["chargrams"].indices) & set(a.encode("Club Sales", True)["chargrams"].indices)
    with pytest.raises(ConfigError, match="stopword"):
        Analyzer("klingon")



def test_refusal_counts_terms_answers_unsure_between_thresholds_and_decides_other_languages_on_dense():
    cfg = AnswerConfig(min_term_coverage=0.3, min_dense_score=0.5, confident_term_coverage=0.6,
                       min_dense_score_other_language=0.4)
    answerer = Answerer(cfg, Analyzer("portuguese"))
    boleto = [Passage("d", "1", "O boleto bancário é compensado em até 96 horas úteis. Não há taxa extra.", 0.0, 0.7)]
    sure = answerer.answer("Em quantas horas o boleto bancário é compensado?", boleto, generate=False)
    assert sure.answerable and sure.grounding.confident and not sure.text.startswith(UNSURE)
    assert "96 horas" in sure.grounding.quotes[0][1]
    unsure = answerer.answer("O boleto bancário tem desconto para estudantes universitários?", boleto, generate=False)
    assert unsure.answerable and not unsure.grounding.confident and unsure.text.startswith(UNSURE)
    assert not answerer.ground("Qual é a capital da Austrália?", boleto).answerable  # no term found
    low_dense = [Passage("d", "1", boleto[0].text, 0.0, 0.35)]
    assert not answerer.ground("Em quantas horas o boleto bancário é compensado?", low_dense).answerable
    # An English question shares no stems with Portuguese text: the dense score decides, quotes still come back.
    english = answerer.ground("How many hours does the bank slip take to clear?", boleto)
    assert english.other_language and english.answerable and not english.confident and english.quotes
    assert not answerer.ground("How many hours does the bank slip take to clear?", low_dense).answerable
    assert not Analyzer("portuguese").other_language("Qual é a capital da Austrália?")


def test_answer_type_check_declines_quantity_questions_whose_quotes_hold_no_number_or_not_its_number():
    from reprolab.rag.answer_type import answer_type_gap

    assert answer_type_gap("Quantos templates de checkout existem?", "Há várias opções de templates.", "portuguese")
    assert answer_type_gap("Quanto custa o checkout?", "O checkout é grátis e ilimitado.", "portuguese") is None
    assert answer_type_gap("Qual é a taxa de parcelamento?", "A taxa é de 2,99% ao mês.", "portuguese") is None
    assert answer_type_gap("Qual é a taxa cobrada?", "Uma taxa é cobrada por venda.", "portuguese")  # "uma": article
    assert answer_type_gap("Como funciona a taxa?", "Uma taxa é cobrada por venda.", "portuguese") is None
    assert "2022" in answer_type_gap("Quantos alunos havia em 2022?", "Eram 35 milhões de usuários em 2021.",
                                     "portuguese")
    assert answer_type_gap("Quantos alunos havia em 2021?", "Eram 35 milhões em 2021.", "portuguese") is None
    assert answer_type_gap("Quais taxas acima de R$10?", "Produtos acima de R$100 pagam 9,9%.", "portuguese")
    assert answer_type_gap("How many offices are there?", "Offices in Brazil and Spain.", "english")
    assert answer_type_gap("How many offices are there?", "Offices in twelve countries.", "english") is None
    assert answer_type_gap("Quantos escritórios?", "Nenhum número aqui.", "klingon") is None  # no patterns: no check

    boleto = [Passage("d", "1", "O boleto bancário é compensado em poucos dias úteis. Não há taxa extra.", 0.0, 0.7)]
    base = dict(min_term_coverage=0.3, min_dense_score=0.5, confident_term_coverage=0.6)
    question = "Em quantas horas o boleto bancário é compensado?"
    unchecked = Answerer(AnswerConfig(**base), Analyzer("portuguese")).ground(question, boleto)
    assert unchecked.answerable and "no number" in unchecked.type_gap  # reported, not acted on, with the check off
    checked = Answerer(AnswerConfig(**base, answer_type_check=True), Analyzer("portuguese")).ground(question, boleto)
    assert not checked.answerable and not checked.quotes and "no number" in checked.type_gap
    english = Answerer(AnswerConfig(**base, answer_type_check=True), Analyzer("portuguese")).ground(
        "How many hours does the bank slip take to clear?", boleto)
    assert english.other_language and english.answerable and english.type_gap is None  # not checked


# --- the document index -----------------------------------------------------------------------------------------
def test_ingest_is_idempotent_and_a_change_replaces_chunks(index):
    text = DOC.read_text(encoding="utf-8")[:6000]
    first = index.ingest(text, "docs/a.txt", {"title": "A"})
    assert first.status == "created" and first.chunks > 3 and first.points_total == first.chunks
    again = index.ingest(text, "docs/a.txt", {"title": "A"})
    assert again.status == "unchanged" and again.points_total == first.points_total
    retitled = index.ingest(text, "docs/a.txt", {"title": "B"})
    assert retitled.status == "updated" and index.get("docs/a.txt").metadata == {"title": "B"}
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


def test_document_state_lives_in_qdrant_so_another_process_sees_it(tmp_path):
    client = QdrantClient(path=str(tmp_path / "q"))
    first = DocumentIndex(client, HashEmbedding(), _config()).ingest("Um texto. " * 50, "d", {"k": "v"})
    client.close()
    assert not [p for p in tmp_path.iterdir() if p.name != "q"]  # no docstore file beside Qdrant
    client = QdrantClient(path=str(tmp_path / "q"))
    reopened = DocumentIndex(client, HashEmbedding(), _config())
    assert [(d.document_id, d.chunks, d.metadata) for d in reopened.list()] == [("d", first.chunks, {"k": "v"})]
    result = reopened.ingest("Um texto. " * 50, "d", {"k": "v"})
    assert result.status == "unchanged" and result.points_total == first.points_total
    client.close()


def test_a_failed_write_leaves_no_trace(index, monkeypatch):
    index.ingest("Versão antiga do documento. " * 30, "docs/x.txt")
    base = index.ingest("Outro.", "docs/y.txt").points_total - index.get("docs/x.txt").chunks
    original_upsert = index.client.upsert

    def broken_upsert(collection, points, **kwargs):
        original_upsert(collection, points=points[: len(points) // 2], **kwargs)  # half lands, then it drops
        raise ConnectionError("qdrant went away")

    monkeypatch.setattr(index.client, "upsert", broken_upsert)
    with pytest.raises(Exception, match="qdrant went away|unreachable"):
        index.ingest("Versão nova do documento, bem mais longa que a antiga. " * 60, "docs/x.txt")
    monkeypatch.undo()
    with pytest.raises(DocumentNotFound):
        index.get("docs/x.txt")
    assert index.points() == base  # neither the old nor a partial new version


def test_document_ids_from_file_names_are_base_names_and_dot_segments_are_refused():
    assert id_from_filename("../../etc/passwd.txt") == "docs/passwd.txt"
    assert id_from_filename("C:\\Users\\ana\\nota.txt") == "docs/nota.txt"
    assert check_document_id("docs/kb-1.txt") == "docs/kb-1.txt"
    for bad in ("docs/../../etc/passwd.txt", "docs/./a.txt", "a//b", "x y"):
        with pytest.raises(InputError):
            check_document_id(bad)


# --- hybrid search inside Qdrant --------------------------------------------------------------------------------
def test_hybrid_search_runs_inside_qdrant_with_filters_and_sees_new_documents_at_once(index, monkeypatch):
    index.ingest(DOC.read_text(encoding="utf-8"), "docs/hotmart.txt", {"lang": "pt"})
    retriever = HybridRetriever(index.client, index.embedder, index.collection, _config().retrieval, documents=index)
    calls = []
    original = index.client.query_points
    monkeypatch.setattr(index.client, "query_points", lambda *a, **k: calls.append(k) or original(*a, **k))
    top = retriever.retrieve("Qual é a sede global da Hotmart?", 5)
    assert any("Amsterdã" in p.text for p in top) and top[0].dense_score is not None
    # One Query API call: dense + both sparse channels prefetched, fused by Qdrant's RRF.
    assert len(calls) == 1 and sorted(p.using for p in calls[0]["prefetch"]) == ["chargrams", "dense", "words"]
    assert type(calls[0]["query"]).__name__ == "FusionQuery"
    assert not any(isinstance(v, list) and len(v) > 20 for v in vars(retriever).values())  # no corpus in process
    # A document ingested is found by the very next query (no rebuild, no timer), and filters apply in Qdrant.
    index.ingest("A sede da Lusitânia Editora fica em Lisboa.", "docs/other.txt", {"lang": "pt-PT"})
    only = retriever.retrieve("Onde fica a sede da Lusitânia Editora?", 5, filters={"lang": "pt-PT"})
    assert [p.document_id for p in only] == ["docs/other.txt"]
    assert all(f.must for f in (p.filter for p in calls[-1]["prefetch"]))


def test_the_query_path_imports_no_in_process_lexical_index():
    code = ("import sys; import reprolab.rag.engine, services.query.main, services.app; "
            "bad = sorted(m for m in sys.modules if m.startswith(('bm25s', 'llama_index.retrievers.bm25'))); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]


def test_a_collection_of_another_embedder_or_dimension_is_refused(index):
    index.ingest("Um documento.", "d")
    other = DocumentIndex(index.client, HashEmbedding(), _config(), embedder_name="another-embedder")
    with pytest.raises(IndexMismatch, match="another-embedder"):
        other.check_collection()

    class Wider(HashEmbedding):
        def _vec(self, text):
            return super()._vec(text) + [0.0] * 32

    with pytest.raises(IndexMismatch, match="size 64"):
        DocumentIndex(index.client, Wider(), _config(), embedder_name="hash-64").check_collection()


# --- the manifest -----------------------------------------------------------------------------------------------
def test_manifest_is_the_one_source_and_only_the_backend_may_be_overridden(tmp_path):
    cfg = _config()
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest_record(cfg, 384, documents=[])))
    manifest = load_manifest(path)
    assert manifest.embedder.dim == 384 and manifest.rag == cfg and manifest.evaluated_backend == "extractive"
    assert served_config(manifest) is manifest.rag
    assert served_config(manifest, "local").answer.backend == "local"
    with pytest.raises(ConfigError, match="ANSWER_BACKEND"):
        served_config(manifest, "gpt")
    with pytest.raises(ConfigError, match="no index manifest"):
        load_manifest(tmp_path / "missing.json")
    path.write_text(json.dumps({"rag": {"chunking": {"chunk_size": 1}}, "embedder": {"name": "x", "dim": 1}}))
    with pytest.raises(ConfigError, match="not valid"):
        load_manifest(path)


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
    with pytest.raises(FeatureUnavailable, match="not built"):  # a 503 with a message, never a silent []
        ImageSearch(client, FakeClip(), "missing").by_text("x")
    client.close()


# --- evaluation -------------------------------------------------------------------------------------------------
def test_labelled_set_has_its_halves_languages_and_gold_evidence():
    questions = load_labelled_set(REPO / "samples/qa/hotmart_labelled.json", DOC.read_text(encoding="utf-8"))
    answerable = [q for q in questions if q.answerable]
    assert len(questions) >= 60 and len(questions) - len(answerable) >= 15
    assert sum(q.lang == "en" for q in questions) >= 10
    assert all(q.key_facts for q in answerable)
    for lang in ("pt", "en"):
        for ans in (True, False):
            group = [q.half for q in questions if q.lang == lang and q.answerable == ans]
            assert abs(group.count("tune") - group.count("report")) <= 1  # a balanced fixed split
    perguntas = [line.strip() for line in (REPO / "samples/qa/perguntas.txt").read_text().splitlines() if line.strip().endswith("?")]
    by_id = {q.id: q.question for q in questions}
    assert by_id["q01"] == perguntas[0] and by_id["q15"] == perguntas[-1]  # the assessment's own questions kept


def test_labelled_set_errors_name_the_problem(tmp_path):
    path = tmp_path / "set.json"
    path.write_text(json.dumps({"questions": [{"id": "a", "question": "A?", "evidence": ["x"], "half": "test"}]}))
    with pytest.raises(Exception, match="half 'test'"):
        load_labelled_set(path)
    path.write_text(json.dumps({"questions": [{"id": "a", "question": "A?", "evidence": ["x"]}]}))
    with pytest.raises(Exception, match="has no 'half'"):
        load_labelled_set(path)


def test_evidence_hits_and_key_facts():
    gold = ["com sede em Amsterdã, nos Países Baixos (Holanda)"]
    assert passage_hits_evidence("A Hotmart ... com sede em  Amsterdã, nos Países Baixos (Holanda), e", gold)
    assert passage_hits_evidence("... com sede em Amsterdã, nos Paí", gold)  # cut by a chunk boundary: > half
    assert not passage_hits_evidence("sede em Amsterdã", gold)
    assert first_hit_rank(["x", "y com sede em Amsterdã, nos Países Baixos (Holanda)"], gold) == 2
    assert key_fact_recall("Taxa de 9,9% + R$ 1", [["9.9%", "9,9%"], ["R$ 1"], ["2011"]]) == pytest.approx(2 / 3)


def test_evaluation_rows_back_the_declared_metrics_per_slice():
    qs = [LabelledQuestion("a", "A?", "report", "pt", True, ["alpha beta"], [["alpha"], ["beta"]]),
          LabelledQuestion("b", "B?", "report", "pt", True, ["gamma delta"], [["gamma"]]),
          LabelledQuestion("u", "U?", "report", "pt", False),
          LabelledQuestion("e", "E?", "report", "en", True, ["alpha beta"], [["alpha"]]),
          LabelledQuestion("t", "T?", "tune", "pt", False)]
    answers = {"A?": RagOutcome(["zzz", "alpha beta"], "alpha", False, 12.0),
               "B?": RagOutcome(["zzz"], "-", True),
               "U?": RagOutcome([], "não", True),
               "E?": RagOutcome(["alpha beta"], "alpha", False),
               "T?": RagOutcome([], "ok", False)}
    rows, timings = evaluate_rag(qs, lambda q, backend: answers[q.question], {"extractive": {"tune", "report"},
                                                                                "local": {"report"}})
    assert not any("latency_ms" in r for r in rows)  # timing would change the DVC outputs' bytes on every rebuild
    assert [(t["id"], t["variant"]) for t in timings] == [(r["id"], r["variant"]) for r in rows]
    assert latency_p50(timings)["extractive"] == 12.0
    assert {r["variant"] for r in rows} == {"extractive", "extractive_en", "extractive_tune", "local", "local_en"}
    assert all(isinstance(r["id"], str) and r["half"] in ("tune", "report") for r in rows)
    ev = evaluate_variants(RAG_SPECS, rows)
    head = {k: v["value"] for k, v in ev["extractive"].items()}
    assert head["hit@5"] == 0.5 and head["hit@1"] == 0.0 and head["mrr"] == 0.25
    assert head["false_refusal_rate"] == 0.5 and head["unanswerable_declined_rate"] == 1.0
    assert head["key_fact_recall"] == pytest.approx(1 / 3)  # a: 1 of 2 facts; b declined: 0 of 1
    assert ev["extractive"]["hit@5"]["n"] == 2 and ev["extractive_tune"]["unanswerable_declined_rate"]["value"] == 0.0
    assert ev["extractive_en"]["hit@1"]["value"] == 1.0


def test_concurrent_questions_share_one_embedding_pass_and_get_their_own_vectors():
    from concurrent.futures import ThreadPoolExecutor

    from reprolab.rag.embedding import QueryBatcher, load_text_embedder

    embedder = load_text_embedder()
    batcher = QueryBatcher(embedder, max_wait_s=0.05)
    texts = [f"pergunta número {i} sobre a Hotmart" for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(batcher.embed, texts))
    for text, vector in zip(texts, got):
        assert np.allclose(vector, embedder.get_query_embedding(text), atol=1e-5)


def test_a_dropped_collection_answers_empty_and_a_new_one_is_checked_again(index):
    retriever = HybridRetriever(index.client, index.embedder, index.collection, _config().retrieval, documents=index)
    assert retriever.retrieve("boletos") == []
    index.ingest("Um texto sobre boletos.", "d")
    assert len(retriever.retrieve("boletos")) == 1
    index.client.delete_collection(index.collection)
    assert retriever.retrieve("boletos") == []  # not a 500
    index.ingest("Outro texto sobre boletos.", "d2")
    assert [p.document_id for p in retriever.retrieve("boletos")] == ["d2"]
