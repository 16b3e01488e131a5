"""Shared fixtures: a real S3 endpoint (moto_server on loopback) and small helpers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3 HTTP endpoint: `moto_server` on 127.0.0.1, with env vars set for boto3 and dvc-s3."""
    port = free_port()
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "WHEN_REQUIRED",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(moto_endpoint):
    """A fresh, empty bucket on the moto endpoint; yields (boto3 client, bucket name)."""
    import uuid

    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint)
    name = f"test-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=name)
    yield client, name


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    """corpus/ and splits/ built from the shipped samples by the real library code, in a temp folder.

    Tests that need the real corpus use this instead of the repository's own DVC outputs, which a fresh
    clone does not have. Returns (corpus, splits).
    """
    import json

    from reprolab.data.corpus import FetchConfig, build_corpus, read_records
    from reprolab.data.snapshot import update_snapshot
    from reprolab.data.sources import LocalSource
    from reprolab.data.split import SplitConfig, split_by_hash

    root = tmp_path_factory.mktemp("sample_data")
    update_snapshot(LocalSource(REPO / "samples"), root / "data")
    build_corpus(root / "data", root / "corpus", FetchConfig())
    for dataset in ("art", "nlupp", "viggo"):
        (root / "splits" / dataset).mkdir(parents=True)
        for name, part in split_by_hash(read_records(root / "corpus", dataset), SplitConfig()).items():
            lines = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in part)
            (root / "splits" / dataset / f"{name}.jsonl").write_text(lines, encoding="utf-8")
    return root / "corpus", root / "splits"
