"""The embedding service over HTTP on a real uvicorn process, serving two CLIP model versions side by side.

Tolerance: a served vector and the library's vector for the same input have cosine >= 1 - 1e-5 (the same float32
model in two processes; only the JSON round trip of float32 values separates them, which is exact).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from reprolab.clip.embedding import ClipEmbedder
from reprolab.clip.model import ClipModelConfig, build_model, save_model_dir
from services.embed.versions import Deprecation, default_version, dvc_lock_md5, parse_deprecations
from tests.test_services_http import Service

COSINE_TOL = 1e-5
OLD, NEW = "v2026.11.0", "v2026.12.0"
READ_KEY, OTHER_READ_KEY = "read-key-0123456789abcdef", "read-key-rotated-fedcba9876"
TEXTS = ["a red square", "a portrait of a woman in a blue dress", "storm over the sea"]


def _model_dir(root: Path, seed: int) -> Path:
    torch.manual_seed(seed)  # the projections start random: two seeds give two incomparable versions
    model, model_cfg, preprocess = build_model(ClipModelConfig())
    save_model_dir(model, model_cfg, preprocess, root / f"clip-{seed}", {"model_name": "tiny-test-clip"})
    return root / f"clip-{seed}"


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A PNG header that claims 1.6 billion pixels: decoding it would take gigabytes, the file is tiny."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {OLD: _model_dir(root, 0), NEW: _model_dir(root, 1)}


@pytest.fixture(scope="module")
def served(versions, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("embed")
    env = {"EMBED_MODELS": ",".join(f"{v}={d}" for v, d in versions.items()),
           "EMBED_DEPRECATED": f"{OLD}=2026-12-01/2027-01-31", "EMBED_MAX_BATCH": "4",
           "EMBED_MAX_IMAGE_PIXELS": "4000000", "READ_API_KEYS": f"{READ_KEY},{OTHER_READ_KEY}",
           "REPROLAB_LOG_LEVEL": "INFO"}
    svc = Service("services.embed.main:app", env, tmp)
    try:
        svc.wait()
        yield svc
    finally:
        svc.stop()


def _auth(key: str = READ_KEY) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _assert_same_vectors(served: list[list[float]], library: np.ndarray) -> None:
    got = np.asarray(served, dtype=np.float32)
    assert got.shape == library.shape
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(got * library, axis=1) / np.linalg.norm(library, axis=1)
    assert np.all(cosine >= 1 - COSINE_TOL), cosine


@pytest.mark.slow
def test_text_and_image_vectors_equal_the_library_for_each_version(served, versions, tmp_path):
    images = [Image.new("RGB", (96, 64), c) for c in ("red", "navy")]
    images.append(Image.effect_mandelbrot((80, 80), (-2, -1.5, 1, 1.5), 50).convert("RGB"))
    paths = []
    for i, im in enumerate(images):
        paths.append(tmp_path / f"im{i}.png")
        paths[-1].write_bytes(_png(im))
    for version, model_dir in versions.items():
        library = ClipEmbedder.from_dir(model_dir)
        r = httpx.post(served.url + "/embed/text", json={"texts": TEXTS, "version": version}, headers=_auth(),
                       timeout=120)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["version"], body["model"], body["dim"]) == (version, "tiny-test-clip", library.dim)
        assert r.headers["x-model-version"] == version
        _assert_same_vectors(body["vectors"], library.encode_texts(TEXTS))

        files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
        r = httpx.post(served.url + "/embed/image", files=files, data={"version": version}, headers=_auth(),
                       timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["version"] == version
        _assert_same_vectors(r.json()["vectors"], library.encode_images(paths))


@pytest.mark.slow
def test_default_is_the_newest_version_and_the_old_one_is_deprecated_and_incomparable(served):
    new = httpx.post(served.url + "/embed/text", json={"texts": TEXTS}, headers=_auth(), timeout=60)
    old = httpx.post(served.url + "/embed/text", json={"texts": TEXTS, "version": OLD}, headers=_auth(), timeout=60)
    assert new.json()["version"] == NEW and "deprecation" not in new.headers and "sunset" not in new.headers
    assert old.headers["deprecation"] == "@1796083200"  # 2026-12-01T00:00:00Z
    assert old.headers["sunset"] == "Sun, 31 Jan 2027 00:00:00 GMT"
    cos = np.sum(np.asarray(new.json()["vectors"]) * np.asarray(old.json()["vectors"]), axis=1)
    assert np.all(cos < 0.99), cos  # the reason a client must name the version it indexed with
    listed = {v["version"]: v for v in httpx.get(served.url + "/versions", headers=_auth()).json()}
    assert listed[NEW]["default"] and not listed[OLD]["default"] and listed[OLD]["sunset"] == "2027-01-31"
    ready = httpx.get(served.url + "/readyz").json()
    assert ready["default"] == NEW and set(ready["versions"]) == {OLD, NEW}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["not an image", "bomb", "over the pixel limit", "empty texts", "empty text",
                                  "texts over the limit", "images over the limit", "no files", "unknown version"])
def test_bad_input_gets_a_clear_4xx(served, case):
    url, png = served.url, _png(Image.new("RGB", (8, 8), "white"))
    if case == "not an image":
        r = httpx.post(url + "/embed/image", files=[("files", ("notes.png", b"plain text, not a PNG", "image/png"))],
                       headers=_auth())
        expected, needle = 400, "notes.png"
    elif case == "bomb":
        r = httpx.post(url + "/embed/image", files=[("files", ("bomb.png", _bomb_png(), "image/png"))],
                       headers=_auth())
        expected, needle = 413, "decompression bomb"
    elif case == "over the pixel limit":
        r = httpx.post(url + "/embed/image", files=[("files", ("big.png", _bomb_png(3000, 3000), "image/png"))],
                       headers=_auth())
        expected, needle = 413, "3000x3000 pixels, over the limit of 4000000"
    elif case == "empty texts":
        r = httpx.post(url + "/embed/text", json={"texts": []}, headers=_auth())
        expected, needle = 400, "empty batch"
    elif case == "empty text":
        r = httpx.post(url + "/embed/text", json={"texts": ["fine", "  "]}, headers=_auth())
        expected, needle = 400, "texts[1]"
    elif case == "texts over the limit":
        r = httpx.post(url + "/embed/text", json={"texts": ["x"] * 5}, headers=_auth())
        expected, needle = 413, "limit of 4"
    elif case == "images over the limit":
        r = httpx.post(url + "/embed/image", files=[("files", (f"{i}.png", png, "image/png")) for i in range(5)],
                       headers=_auth())
        expected, needle = 413, "limit of 4"
    elif case == "no files":
        r = httpx.post(url + "/embed/image", data={"version": NEW}, headers=_auth())
        expected, needle = 422, "files"
    else:
        r = httpx.post(url + "/embed/text", json={"texts": ["x"], "version": "v1999.1.0"}, headers=_auth())
        expected, needle = 404, NEW
    assert r.status_code == expected, r.text
    assert needle in r.json()["detail"]


@pytest.mark.slow
def test_read_key_required_when_configured_and_never_logged(served):
    body = {"texts": ["a red square"]}
    r = httpx.post(served.url + "/embed/text", json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    wrong = "wrong-key-7c1e4b9a55d2"
    r = httpx.post(served.url + "/embed/text", json=body, headers=_auth(wrong))
    assert r.status_code == 403 and wrong not in r.text
    assert httpx.post(served.url + "/embed/text", json=body, headers=_auth(OTHER_READ_KEY)).status_code == 200
    assert httpx.get(served.url + "/healthz").status_code == 200  # probes need no key
    log = Path(served.log.name).read_text()
    assert "request refused" in log
    assert wrong not in log and READ_KEY not in log and OTHER_READ_KEY not in log


@pytest.mark.slow
def test_metrics_parse_with_histogram_buckets_version_info_and_embedding_counts(served):
    httpx.post(served.url + "/embed/text", json={"texts": TEXTS}, headers=_auth(), timeout=60)
    text = httpx.get(served.url + "/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    latency = families["reprolab_http_request_duration_seconds"]
    assert latency.type == "histogram"
    buckets = [s for s in latency.samples if s.name.endswith("_bucket") and s.labels["route"] == "/embed/text"
               and s.labels["status"] == "200"]
    assert len(buckets) >= 10 and buckets[-1].labels["le"] == "+Inf" and buckets[-1].value >= 1
    assert any(s.name.endswith("_count") and s.labels["route"] == "/embed/text" for s in latency.samples)
    info = {(s.labels["model"], s.labels["version"]) for s in families["reprolab_model_info"].samples}
    assert info == {("tiny-test-clip", OLD), ("tiny-test-clip", NEW)}
    served_new = [s for s in families["reprolab_embeddings"].samples
                  if s.name == "reprolab_embeddings_total" and s.labels == {"kind": "text", "version": NEW}]
    assert served_new and served_new[0].value >= len(TEXTS)
    statuses = {s.labels["status"] for s in families["reprolab_http_requests"].samples}
    assert "200" in statuses


def test_version_from_dvc_lock_md5(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  train_clip:\n    cmd: python -m stages.train_clip\n    outs:\n"
                    "    - path: models/clip\n      hash: md5\n      md5: 54299888699e85f6f9e924f5f9c83c9f.dir\n")
    assert dvc_lock_md5(lock) == "54299888699e85f6f9e924f5f9c83c9f"
    assert dvc_lock_md5(lock, "models/llm") is None and dvc_lock_md5(tmp_path / "missing.lock") is None


def test_default_version_and_deprecations():
    assert default_version(["v2026.9.0", "v2026.12.0", "v2026.11.0"], set()) == "v2026.12.0"  # semver, not text
    assert default_version(["v2026.11.0", "v2026.12.0"], {"v2026.12.0"}) == "v2026.11.0"
    assert default_version(["md5:aa", "md5:bb"], set()) == "md5:bb"
    from reprolab.errors import ConfigError

    with pytest.raises(ConfigError, match="not served"):
        default_version(["v2026.11.0"], set(), "v2030.1.0")
    assert parse_deprecations({"v1.0.0": "2026-12-01/2027-01-31"})["v1.0.0"] == Deprecation(
        *(__import__("datetime").date.fromisoformat(d) for d in ("2026-12-01", "2027-01-31")))
    with pytest.raises(ConfigError, match="SINCE/SUNSET"):
        parse_deprecations({"v1.0.0": "2027-01-31"})
    with pytest.raises(ConfigError, match="SINCE <= SUNSET"):
        parse_deprecations({"v1.0.0": "2027-02-01/2027-01-31"})


def test_malformed_embed_models_is_a_config_error():
    from reprolab.errors import ConfigError
    from services.settings import Settings

    with pytest.raises(ConfigError, match="EMBED_MODELS.*NAME=VALUE"):
        Settings(embed_models="v2026.12.0=/models/a,/models/b").embed_model_dirs()
    assert Settings(embed_models="", embed_model_version="v1.2.3", clip_model_dir="/m").embed_model_dirs() == {
        "v1.2.3": "/m"}


@pytest.mark.slow
def test_an_unnamed_model_is_versioned_by_its_md5_in_dvc_lock(versions, tmp_path):
    from reprolab.errors import ConfigError
    from services.embed.versions import ModelSet

    lock = tmp_path / "dvc.lock"
    lock.write_text("stages:\n  train_clip:\n    outs:\n    - path: models/clip\n      md5: 0123abcd.dir\n")
    models = ModelSet.load({"": str(versions[NEW])}, {}, str(lock))
    assert models.default == "md5:0123abcd" and models.get(None).model_name == "tiny-test-clip"
    with pytest.raises(ConfigError, match="EMBED_MODEL_VERSION"):
        ModelSet.load({"": str(versions[NEW])}, {}, str(tmp_path / "missing.lock"))
