"""End to end: ingest + query as a REAL uvicorn process on 127.0.0.1 with embedded Qdrant in a temp dir, serving
the settings of an index manifest written from params.yaml as the index stage writes it."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "docs" / "como-funciona-hotmart.txt"
LIMIT = 200_000
WRITE_KEY = "test-write-key-6512bd43d9caa6e0"  # writes are refused (503) without WRITE_API_KEYS
WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, app: str, env: dict, tmp: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / f"{app.replace(':', '_')}.log", "w")
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                    "OMP_NUM_THREADS": "2", **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = 300) -> None:  # model loading on a busy 2-core machine
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        raise TimeoutError(f"service not up after {timeout}s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def write_manifest(tmp: Path, dim: int = 384) -> Path:
    """index/manifest.json as the index stage records it: params.yaml `index.rag` and the embedder's dimension."""
    from reprolab.config import load_section
    from reprolab.rag.build import IndexConfig
    from reprolab.rag.manifest import manifest_record

    cfg = load_section("index", IndexConfig, REPO / "params.yaml")
    path = tmp / f"manifest-{dim}.json"
    path.write_text(json.dumps(manifest_record(cfg.rag, dim)))
    return path


def _env(tmp: Path, **extra) -> dict:
    return {"QDRANT_PATH": str(tmp / "qdrant"), "INDEX_MANIFEST": str(write_manifest(tmp)),
            "CLIP_MODEL_DIR": str(tmp / "no-clip"), "MAX_UPLOAD_BYTES": str(LIMIT), "MAX_QUESTION_CHARS": "2000",
            "WRITE_API_KEYS": WRITE_KEY, **extra}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("served")
    svc = Service("services.app:app", _env(tmp), tmp)
    try:
        svc.wait()
        yield svc
    finally:
        svc.stop()


def _upload(url, name, data, content_type="text/plain", **form):
    return httpx.post(url + "/documents", files={"file": (name, data, content_type)}, data=form, headers=WRITE,
                      timeout=120)


def _points(url) -> int:
    return httpx.get(url + "/readyz", timeout=10).json()["points"]


@pytest.mark.slow
def test_ingest_query_reingest_and_replace(served):
    url = served.url
    r = _upload(url, "como-funciona-hotmart.txt", SAMPLE.read_bytes())
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["status"] in ("created", "unchanged") and first["chunks"] > 10
    points = _points(url)

    r = httpx.post(url + "/query", json={"question": "Qual é a sede global da Hotmart?", "top_k": 5}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answerable"] and "Amsterdã" in body["answer"]
    assert body["backend"] == body["served_backend"] == "extractive"  # what the index stage evaluated
    assert body["cited"] and all(1 <= n <= len(body["passages"]) for n in body["cited"])
    assert f"[{body['cited'][0]}]" in body["answer"]
    assert body["passages"][0]["document_id"] == "docs/como-funciona-hotmart.txt"
    assert set(body["timings_ms"]) >= {"retrieval", "answer", "total"}

    r = httpx.post(url + "/query", json={"question": "Qual é a capital da Austrália?"}, timeout=60)
    assert r.status_code == 200 and not r.json()["answerable"]
    assert r.json()["grounding"]["type_gap"] is None  # declined on coverage; the answer-type check ships off
    assert "não contêm" in r.json()["answer"]

    # Re-ingesting the same document changes nothing.
    again = _upload(url, "como-funciona-hotmart.txt", SAMPLE.read_bytes()).json()
    assert again["status"] == "unchanged" and _points(url) == points

    # A changed document replaces its chunks: no duplicates, no orphans.
    doc_id = "docs/changing.txt"
    v1 = httpx.post(url + "/documents", json={"id": doc_id, "text": "Primeira versão. " * 400}, headers=WRITE,
                    timeout=60).json()
    assert v1["status"] == "created"
    assert _points(url) == points + v1["chunks"]
    v2 = httpx.post(url + "/documents", json={"id": doc_id, "text": "Segunda versão curta."}, headers=WRITE,
                    timeout=60).json()
    assert v2["status"] == "updated" and v2["chunks"] == 1
    assert _points(url) == points + 1
    got = httpx.get(f"{url}/documents/{doc_id}", timeout=10).json()
    assert got["chunks"] == 1 and got["chars"] == len("Segunda versão curta.")
    hits = httpx.post(url + "/query", json={"question": "Primeira versão", "filters": {"document_id": doc_id},
                                            "generate": False}, timeout=60).json()["passages"]
    assert all("Primeira" not in p["text"] for p in hits)
    assert httpx.delete(f"{url}/documents/{doc_id}", headers=WRITE, timeout=10).status_code == 200
    assert _points(url) == points
    assert doc_id not in [d["document_id"] for d in httpx.get(url + "/documents", timeout=10).json()]

    metrics = httpx.get(url + "/metrics", timeout=10).text
    assert "reprolab_documents_ingested_total" in metrics and "reprolab_queries_total" in metrics


@pytest.mark.slow
def test_parallel_ingests_of_one_document_leave_one_copy(served):
    url = served.url
    text = "Documento concorrente. Cada frase é um pouco diferente da anterior número %d. "
    body = {"id": "docs/concurrent.txt", "text": "".join(text % i for i in range(300))}
    before = _points(url)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: httpx.post(url + "/documents", json=body, headers=WRITE, timeout=120),
                                range(8)))
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    statuses = sorted(r.json()["status"] for r in results)
    assert statuses == ["created"] + ["unchanged"] * 7
    chunks = results[0].json()["chunks"]
    assert _points(url) == before + chunks
    assert httpx.get(url + "/documents/docs/concurrent.txt", timeout=10).json()["chunks"] == chunks


def _pdf_without_text() -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize(
    "case,status,needle",
    [
        ("empty body", 400, "empty request body"),
        ("zero-byte file", 400, "0 bytes"),
        ("file over the limit", 413, "limit"),
        ("binary named .txt", 422, "binary"),
        ("pdf without text", 422, "no extractable text"),
        ("invalid utf-8", 400, "UTF-8"),
        ("wrong content type", 415, "content type"),
        ("wrong file type", 415, "unsupported type"),
        ("json without text", 400, "text"),
        ("100 kB question", 413, "limit"),
        ("unknown document id", 404, "no document"),
        ("unknown document delete", 404, "no document"),
    ],
)
def test_bad_input_gets_a_clear_4xx(served, case, status, needle):
    url = served.url
    before = _points(url)
    if case == "empty body":
        r = httpx.post(url + "/documents", content=b"", headers={**WRITE, "content-type": "application/json"})
    elif case == "zero-byte file":
        r = _upload(url, "empty.txt", b"")
    elif case == "file over the limit":
        r = _upload(url, "big.txt", b"a" * (LIMIT + 10))
    elif case == "binary named .txt":
        r = _upload(url, "image.txt", (REPO / "samples/art/images/0.jpg").read_bytes())
    elif case == "pdf without text":
        r = _upload(url, "scan.pdf", _pdf_without_text(), "application/pdf")
    elif case == "invalid utf-8":
        r = _upload(url, "latin1.txt", "informação em latin-1".encode("latin-1"))
    elif case == "wrong content type":
        r = httpx.post(url + "/documents", content=b"<doc/>", headers={**WRITE, "content-type": "application/xml"})
    elif case == "wrong file type":
        r = _upload(url, "sheet.xlsx", b"PK\x03\x04", "application/octet-stream")
    elif case == "json without text":
        r = httpx.post(url + "/documents", json={"metadata": {}}, headers=WRITE)
    elif case == "100 kB question":
        r = httpx.post(url + "/query", json={"question": "a" * 100_000}, timeout=30)
    elif case == "unknown document id":
        r = httpx.get(url + "/documents/docs/missing.txt")
    else:
        r = httpx.delete(url + "/documents/docs/missing.txt", headers=WRITE)
    assert r.status_code == status, r.text
    assert needle.lower() in r.json()["detail"].lower()
    assert _points(url) == before  # nothing half-written


@pytest.mark.slow
def test_qdrant_unreachable_gives_503(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    svc = Service("services.app:app", _env(tmp_path, QDRANT_URL=f"http://127.0.0.1:{closed}"), tmp_path)
    try:
        svc.wait()
        assert httpx.get(svc.url + "/healthz").status_code == 200
        r = httpx.get(svc.url + "/readyz", timeout=30)
        assert r.status_code == 503 and "unreachable" in r.json()["detail"]
        r = httpx.post(svc.url + "/documents", json={"id": "docs/x.txt", "text": "Olá."}, headers=WRITE,
                       timeout=30)
        assert r.status_code == 503, r.text
        r = httpx.post(svc.url + "/query", json={"question": "Olá?"}, timeout=30)
        assert r.status_code == 503, r.text
    finally:
        svc.stop()


@pytest.mark.slow
def test_separate_ingest_and_query_apps_start_and_serve_openapi(tmp_path):
    """The two compose services' apps, each alone (one owns the embedded folder at a time)."""
    for app, path in (("services.ingest.main:app", "/documents"), ("services.query.main:app", "/query")):
        svc = Service(app, _env(tmp_path), tmp_path)
        try:
            svc.wait()
            spec = httpx.get(svc.url + "/openapi.json").json()
            assert path in spec["paths"]
            assert httpx.get(svc.url + "/readyz").status_code == 200
        finally:
            svc.stop()


# --- one configuration, hybrid search in Qdrant, ids, images, the Mistral path ----------------------------------
@pytest.mark.slow
def test_a_document_is_found_by_the_very_next_query_and_ids_are_addressable(served):
    url = served.url
    text = "O xilofonorama é o instrumento oficial do Festival de Quixeramobim, tocado desde 1931."
    r = _upload(url, "../../etc/xilofonorama.txt", text.encode())
    assert r.status_code == 200 and r.json()["document_id"] == "docs/xilofonorama.txt", r.text
    body = httpx.post(url + "/query", json={"question": "Desde quando se toca o xilofonorama?", "generate": False},
                      timeout=60).json()
    assert body["passages"][0]["document_id"] == "docs/xilofonorama.txt" and "1931" in body["answer"]
    assert httpx.get(url + "/documents/docs/xilofonorama.txt", timeout=10).status_code == 200
    r = httpx.post(url + "/documents", json={"id": "docs/../../etc/passwd.txt", "text": "x"}, headers=WRITE,
                   timeout=10)
    assert r.status_code == 400 and "'..'" in r.json()["detail"]
    assert httpx.delete(url + "/documents/docs/xilofonorama.txt", headers=WRITE, timeout=10).status_code == 200


@pytest.mark.slow
def test_image_search_refuses_a_decompression_bomb_and_says_why_it_is_unavailable(served):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG")  # ~50 kB on disk, 400 megapixels decoded
    r = httpx.post(served.url + "/search/similar", files={"file": ("bomb.png", buf.getvalue(), "image/png")}, timeout=60)
    assert r.status_code == 413 and "pixel" in r.json()["detail"], r.text
    r = httpx.post(served.url + "/search/images", json={"text": "a red boat"}, timeout=30)
    assert r.status_code == 503 and "CLIP" in r.json()["detail"]  # a clear message, not []


@pytest.mark.slow
def test_the_service_refuses_an_index_of_another_embedder_dimension(tmp_path):
    from reprolab.rag.store import create_documents_collection, open_client

    wrong_manifest = Service("services.app:app", _env(tmp_path, INDEX_MANIFEST=str(write_manifest(tmp_path, 512))),
                             tmp_path)
    with pytest.raises(RuntimeError, match="records 512"):
        wrong_manifest.wait()
    wrong_manifest.stop()

    client = open_client(path=tmp_path / "qdrant")  # the services' embedded engine
    create_documents_collection(client, "documents", 8)  # a collection some other embedder wrote
    client.close()
    wrong_collection = Service("services.app:app", _env(tmp_path), tmp_path)
    with pytest.raises(RuntimeError, match="size 8"):
        wrong_collection.wait()
    wrong_collection.stop()


@pytest.mark.slow
def test_the_mistral_backend_over_http_and_an_outage_is_a_503(tmp_path):
    from tests.fake_mistral import API_KEY, FakeMistral

    fake = FakeMistral(chat_reply="A sede fica em Amsterdã [1].").__enter__()
    svc = Service("services.app:app", _env(tmp_path, ANSWER_BACKEND="mistral", MISTRAL_API_KEY=API_KEY,
                                           MISTRAL_URL=fake.url), tmp_path)
    try:
        svc.wait()
        assert _upload(svc.url, "como-funciona-hotmart.txt", SAMPLE.read_bytes()).status_code == 200
        body = httpx.post(svc.url + "/query", json={"question": "Qual é a sede global da Hotmart?"}, timeout=60).json()
        assert body["backend"] == body["served_backend"] == "mistral"
        assert body["generated"] == "A sede fica em Amsterdã [1]." and 1 in body["cited"]
        assert "Amsterdã" in fake.chat_requests[-1]["messages"][0]["content"]  # the passages went to the model
        fake.__exit__(None, None, None)  # Mistral goes down
        r = httpx.post(svc.url + "/query", json={"question": "Qual é a sede global da Hotmart?"}, timeout=120)
        assert r.status_code == 503 and "Mistral API did not answer" in r.json()["detail"], r.text
        r = httpx.post(svc.url + "/query", json={"question": "Qual é a sede global da Hotmart?", "generate": False},
                       timeout=60)
        assert r.status_code == 200 and r.json()["backend"] == "extractive"  # the way round an outage
    finally:
        svc.stop()
