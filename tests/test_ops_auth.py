"""Who may write: ingest and delete need a key from WRITE_API_KEYS (without one configured, writes are refused),
reads a key from READ_API_KEYS when it is set. On a real uvicorn process (ingest + query in one, embedded Qdrant):
401 without a key, 403 with a wrong one, nothing changes, and no key (right or wrong) appears in the service's log
or in an error body. `make serve` and examples/ingest.sh together, for real: a dev key, never printed."""

from __future__ import annotations

from pathlib import Path

import json
import os
import signal
import subprocess
import time

import httpx
import pytest

from services.runtime import key_matches
from tests.test_services_http import REPO, Service, _env, _free_port, _points

WRITE_KEYS = ("write-key-old-8f14e45fceea167a", "write-key-new-c9f0f895fb98ab91")
READ_KEY = "read-key-45c48cce2e2d7fbd"
WRONG = "wrong-key-d3d9446802a44259"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keyed")
    svc = Service("services.app:app", _env(tmp, WRITE_API_KEYS=",".join(WRITE_KEYS), READ_API_KEYS=READ_KEY), tmp)
    try:
        svc.wait()
        yield svc
    finally:
        svc.stop()


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def documents(svc) -> list[str]:
    return [d["document_id"] for d in httpx.get(svc.url + "/documents", headers=bearer(READ_KEY), timeout=10).json()]


@pytest.mark.slow
def test_writes_need_a_write_key_and_a_refused_write_changes_nothing(keyed):
    body = {"id": "docs/keyed.txt", "text": "Um documento que só entra com a chave certa."}
    before, points = documents(keyed), _points(keyed.url)
    r = httpx.post(keyed.url + "/documents", json=body, timeout=30)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and "Bearer" in r.json()["detail"]
    for headers in (bearer(WRONG), bearer(READ_KEY), {"Authorization": f"Basic {WRITE_KEYS[0]}"}):
        r = httpx.post(keyed.url + "/documents", json=body, headers=headers, timeout=30)
        assert r.status_code in (401, 403), r.text
        assert all(k not in r.text for k in (*WRITE_KEYS, READ_KEY, WRONG))
    assert documents(keyed) == before and _points(keyed.url) == points

    for key in WRITE_KEYS:  # both keys of a rotation work
        r = httpx.post(keyed.url + "/documents", json=body, headers=bearer(key), timeout=60)
        assert r.status_code == 200, r.text
    assert "docs/keyed.txt" in documents(keyed)

    assert httpx.delete(keyed.url + "/documents/docs/keyed.txt", timeout=10).status_code == 401
    assert httpx.delete(keyed.url + "/documents/docs/keyed.txt", headers=bearer(WRONG), timeout=10).status_code == 403
    assert "docs/keyed.txt" in documents(keyed) and _points(keyed.url) > points
    r = httpx.delete(keyed.url + "/documents/docs/keyed.txt", headers=bearer(WRITE_KEYS[1]), timeout=10)
    assert r.status_code == 200 and "docs/keyed.txt" not in documents(keyed)


@pytest.mark.slow
def test_reads_need_a_read_key_when_one_is_configured(keyed):
    question = {"question": "Onde fica a sede?", "generate": False}
    assert httpx.post(keyed.url + "/query", json=question, timeout=30).status_code == 401
    assert httpx.post(keyed.url + "/query", json=question, headers=bearer(WRONG), timeout=30).status_code == 403
    assert httpx.post(keyed.url + "/query", json=question, headers=bearer(READ_KEY), timeout=60).status_code == 200
    assert httpx.get(keyed.url + "/documents", timeout=10).status_code == 401
    for probe in ("/healthz", "/readyz", "/metrics"):  # probes and scrapes need no key
        assert httpx.get(keyed.url + probe, timeout=10).status_code == 200, probe


@pytest.mark.slow
def test_metrics_count_refusals_per_route_and_status_and_name_the_served_model(keyed):
    """/metrics of the RAG app parsed with prometheus-client's parser: histogram buckets per route and status (the
    refused writes of the first test among them), the model-version info metric, the domain counters."""
    from prometheus_client.parser import text_string_to_metric_families

    httpx.post(keyed.url + "/documents", json={"text": "x"}, timeout=30)  # one 401 at least, whatever ran before
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(keyed.url + "/metrics", timeout=10).text)}
    latency = families["reprolab_http_request_duration_seconds"]
    assert latency.type == "histogram"
    buckets = [s for s in latency.samples if s.name.endswith("_bucket") and s.labels["route"] == "/documents"
               and s.labels["method"] == "POST" and s.labels["status"] == "401"]
    assert [b.labels["le"] for b in buckets][-1] == "+Inf" and len(buckets) >= 10 and buckets[-1].value >= 1
    assert all(a.value <= b.value for a, b in zip(buckets, buckets[1:]))  # cumulative
    requests = {(s.labels["route"], s.labels["status"]): s.value for s in families["reprolab_http_requests"].samples
                if s.name == "reprolab_http_requests_total"}
    assert requests[("/documents", "401")] >= 1 and ("/documents/{doc_id:path}", "403") in requests
    from reprolab.config import load_section
    from reprolab.rag.build import IndexConfig

    (info,) = families["reprolab_model_info"].samples
    served = load_section("index", IndexConfig, REPO / "params.yaml").rag.text_embedder  # what _env's manifest names
    assert info.labels["model"] == served and info.labels["version"] and info.value == 1
    assert "reprolab_documents_ingested" in families and "reprolab_chunks_ingested" in families


@pytest.mark.slow
def test_the_ask_example_sends_the_read_key(keyed, tmp_path):
    questions = tmp_path / "perguntas.txt"
    questions.write_text("1. Onde fica a sede?\n2. Quem fundou a empresa?\n")
    env = {**os.environ, "QUERY_URL": keyed.url}
    run = subprocess.run(["examples/ask.sh", str(questions)], cwd=REPO, env={**env, "READ_API_KEY": READ_KEY},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.count("Q: ") == 2, run.stderr
    assert READ_KEY not in run.stdout + run.stderr
    refused = subprocess.run(["examples/ask.sh", str(questions)], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode != 0 and "401" in refused.stderr


@pytest.mark.slow
def test_no_key_reaches_the_log(keyed):
    httpx.post(keyed.url + "/documents", json={"text": "x"}, headers=bearer(WRONG), timeout=30)
    log = Path(keyed.log.name).read_text()
    assert "request refused" in log and "wrong key" in log
    for key in (*WRITE_KEYS, READ_KEY, WRONG):
        assert key not in log


def test_key_comparison():
    assert key_matches("b", ("a", "b")) and not key_matches("c", ("a", "b")) and not key_matches("", ("a",))
    assert not key_matches("a", ())
    from services.settings import Settings

    settings = Settings(write_api_keys=" k1, k2 ,,", read_api_keys="")
    assert settings.write_keys() == ("k1", "k2") and settings.read_keys() == ()
    assert "k1" not in repr(settings)  # keys stay out of a logged settings object


@pytest.mark.slow
def test_without_write_api_keys_writes_are_refused_not_open(tmp_path):
    svc = Service("services.app:app", _env(tmp_path, WRITE_API_KEYS=""), tmp_path)
    try:
        svc.wait()
        points = _points(svc.url)
        for headers in ({}, bearer(WRONG)):
            r = httpx.post(svc.url + "/documents", json={"id": "docs/open.txt", "text": "Entra?"}, headers=headers,
                           timeout=30)
            assert r.status_code == 503 and "set WRITE_API_KEYS" in r.json()["detail"], r.text
            assert WRONG not in r.text
            assert httpx.delete(svc.url + "/documents/docs/open.txt", headers=headers, timeout=10).status_code == 503
        assert _points(svc.url) == points and httpx.get(svc.url + "/documents", timeout=10).json() == []
        # reads stay open without READ_API_KEYS
        assert httpx.post(svc.url + "/query", json={"question": "Entra?", "generate": False}, timeout=60).status_code == 200
    finally:
        svc.stop()
    log = Path(svc.log.name).read_text()
    assert "answer 503 until it is" in log and WRONG not in log


@pytest.mark.slow
def test_make_serve_writes_with_a_dev_key_it_never_prints(tmp_path):
    """`make serve` without WRITE_API_KEYS generates a key file (mode 600) and examples/ingest.sh reads it."""
    key_file, port = tmp_path / "serve-write-key", _free_port()
    env = {**os.environ, **_env(tmp_path), "SERVE_KEY_FILE": str(key_file), "PORT": str(port),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    del env["WRITE_API_KEYS"]
    log_path = tmp_path / "make-serve.log"
    with open(log_path, "w") as log:  # -o: never reinstall the venv from a test
        proc = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "serve"], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        key = key_file.read_text().strip()
        assert len(key) >= 32 and key_file.stat().st_mode & 0o777 == 0o600
        assert httpx.post(url + "/documents", json={"text": "x"}, timeout=30).status_code == 401
        run = subprocess.run(["examples/ingest.sh"], cwd=REPO, env={**env, "INGEST_URL": url}, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert '"status":"unchanged"' in run.stdout.replace(" ", "") and "docs/nota.txt" in run.stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    out = log_path.read_text()
    assert str(key_file) in out and key not in out and key not in run.stdout + run.stderr


def test_the_postman_collection_sends_the_write_key_on_writes():
    collection = json.loads((REPO / "examples/reprolab.postman_collection.json").read_text())

    def token(auth):
        return {item["key"]: item["value"] for item in auth["bearer"]}["token"]

    assert token(collection["auth"]) == "{{read_api_key}}"
    writes = [(folder, item) for folder in collection["item"] for item in folder["item"]
              if item["request"]["method"] in ("POST", "PUT", "DELETE") and "{{ingest_url}}" in item["request"]["url"]["raw"]]
    assert writes
    for folder, item in writes:
        assert token(item["request"].get("auth") or folder["auth"]) == "{{write_api_key}}", item["name"]
