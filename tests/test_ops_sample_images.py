"""The compose one-shot that builds the images collection (services/ingest/images.py), run as a real process
against embedded Qdrant: it fills the collection the query service searches, a re-run writes nothing, a new model
rebuilds it, and bad samples fail with one clear line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.test_embed_service import _model_dir
from tests.test_services_http import REPO, Service, _env

SAMPLES = REPO / "samples" / "art"
N = 6


def _samples(tmp: Path) -> Path:
    """The first N shipped images with their descriptions, laid out as samples/art is."""
    art = tmp / "samples" / "art"
    (art / "images").mkdir(parents=True)
    captions = json.loads((SAMPLES / "descriptions.json").read_text())
    subset = dict(sorted(captions.items())[:N])
    for name in subset:
        shutil.copy(SAMPLES / "images" / name, art / "images" / name)
    (art / "descriptions.json").write_text(json.dumps(subset))
    return art


def _job(env: dict, samples: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.ingest.images", "--samples", str(samples)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)


def _points(tmp: Path) -> tuple[int, set[str]]:
    from reprolab.rag.store import open_client

    client = open_client(path=tmp / "qdrant")  # the services' embedded engine (Qdrant Edge)
    try:
        points, _ = client.scroll("images", limit=100, with_payload=True)
        return client.count("images").count, {p.payload["image"] for p in points}
    finally:
        client.close()


@pytest.mark.slow
def test_the_images_job_fills_the_collection_query_searches_and_is_idempotent(tmp_path):
    art = _samples(tmp_path)
    first, second = _model_dir(tmp_path, 0), _model_dir(tmp_path, 1)
    env = {**os.environ, **_env(tmp_path, CLIP_MODEL_DIR=str(first)), "HF_HUB_OFFLINE": "1"}

    run = _job(env, art)
    assert run.returncode == 0, run.stderr
    assert f"images: {N} images embedded" in run.stdout
    count, images = _points(tmp_path)
    assert count == N and images == {f"art/images/{n}" for n in sorted(os.listdir(art / "images"))}

    run = _job(env, art)  # the same images and model: nothing written
    assert run.returncode == 0 and "already built" in run.stdout, run.stdout + run.stderr
    assert _points(tmp_path)[0] == N

    run = _job({**env, "CLIP_MODEL_DIR": str(second)}, art)  # next month's model: rebuilt, not duplicated
    assert run.returncode == 0 and f"{N} images embedded" in run.stdout, run.stdout + run.stderr
    assert _points(tmp_path)[0] == N

    svc = Service("services.query.main:app", _env(tmp_path, CLIP_MODEL_DIR=str(second)), tmp_path)
    try:
        svc.wait()
        r = httpx.post(svc.url + "/search/images", json={"text": "an old man with a beard", "top_k": 3}, timeout=60)
        assert r.status_code == 200, r.text
        hits = r.json()
        assert len(hits) == 3 and all(h["image"].startswith("art/images/") for h in hits)
    finally:
        svc.stop()


def test_the_images_job_refuses_a_description_without_its_image(tmp_path):
    art = tmp_path / "art"
    (art / "images").mkdir(parents=True)
    (art / "descriptions.json").write_text(json.dumps({"missing.jpg": "A picture that is not there."}))
    env = {**os.environ, **_env(tmp_path, CLIP_MODEL_DIR=str(tmp_path / "no-clip"))}
    run = _job(env, art)
    assert run.returncode == 2 and "error: images:" in run.stderr and "'missing.jpg'" in run.stderr, run.stderr
    assert not (tmp_path / "qdrant").exists()  # nothing opened, nothing half-written
