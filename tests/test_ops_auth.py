"""Who may write: ingest and delete need a key from WRITE_API_KEYS, reads a key from READ_API_KEYS when it is set.
On a real uvicorn process (ingest + query in one, embedded Qdrant): 401 without a key, 403 with a wrong one,
nothing changes, and no key (right or wrong) appears in the service's log or in an error body."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from services.runtime import key_matches
from tests.test_services_http import Service, _env

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
    before = documents(keyed)
    r = httpx.post(keyed.url + "/documents", json=body, timeout=30)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and "Bearer" in r.json()["detail"]
    for headers in (bearer(WRONG), bearer(READ_KEY), {"Authorization": f"Basic {WRITE_KEYS[0]}"}):
        r = httpx.post(keyed.url + "/documents", json=body, headers=headers, timeout=30)
        assert r.status_code in (401, 403), r.text
        assert all(k not in r.text for k in (*WRITE_KEYS, READ_KEY, WRONG))
    assert documents(keyed) == before

    for key in WRITE_KEYS:  # both keys of a rotation work
        r = httpx.post(keyed.url + "/documents", json=body, headers=bearer(key), timeout=60)
        assert r.status_code == 200, r.text
    assert "docs/keyed.txt" in documents(keyed)

    assert httpx.delete(keyed.url + "/documents/docs/keyed.txt", timeout=10).status_code == 401
    assert httpx.delete(keyed.url + "/documents/docs/keyed.txt", headers=bearer(WRONG), timeout=10).status_code == 403
    assert "docs/keyed.txt" in documents(keyed)
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
