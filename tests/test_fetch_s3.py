"""fetch from an s3:// source over two months, on a real S3 endpoint (moto_server on loopback)."""

from __future__ import annotations

import json

import pytest

from tests.pipeline_repo import REPO, PipelineRepo, ran_stages

pytestmark = pytest.mark.slow
SAMPLES = REPO / "samples"


def upload(client, bucket, key, body: bytes) -> None:
    client.put_object(Bucket=bucket, Key=f"upstream/{key}", Body=body)


def test_monthly_fetch_is_incremental_and_quarantines_bad_objects(tmp_path, s3_bucket, moto_endpoint):
    client, bucket = s3_bucket
    descriptions = json.loads((SAMPLES / "art/descriptions.json").read_text())
    month1 = [f"{i}.jpg" for i in range(12)]
    for name in month1:
        upload(client, bucket, f"art/images/{name}", (SAMPLES / "art/images" / name).read_bytes())
    upload(client, bucket, "art/descriptions.json", json.dumps({n: descriptions[n] for n in month1}).encode())
    upload(client, bucket, "docs/kb.txt", (SAMPLES / "docs/como-funciona-hotmart.txt").read_bytes())

    repo = PipelineRepo.clone(tmp_path / "clone")
    repo.set_params("fetch", source=f"s3://{bucket}/upstream", endpoint_url=moto_endpoint)
    first = repo.stage("snapshot")
    assert "14 downloaded" in first.stdout
    assert ran_stages(repo.dvc("repro", "split").stdout) == ["fetch", "split"]
    quality = json.loads((repo.root / "reports/data_quality.json").read_text())
    assert quality["datasets"]["art"] == {"read": 12, "accepted": 12, "quarantined": 0, "duplicates": 0}
    splits_month1 = {
        name: (repo.root / f"splits/art/{name}.jsonl").read_text() for name in ("train", "validation", "test")
    }

    # Month two: new images, among them a truncated JPEG, an empty description and a duplicate image.
    month2 = {f"{i}.jpg": (SAMPLES / "art/images" / f"{i}.jpg").read_bytes() for i in range(12, 20)}
    month2["truncated.jpg"] = (SAMPLES / "art/images/20.jpg").read_bytes()[:2000]
    month2["empty.jpg"] = (SAMPLES / "art/images/21.jpg").read_bytes()
    month2["again.jpg"] = (SAMPLES / "art/images/3.jpg").read_bytes()
    for name, body in month2.items():
        upload(client, bucket, f"art/images/{name}", body)
    new_descriptions = {n: descriptions[n] for n in month2 if n in descriptions}
    new_descriptions.update({"truncated.jpg": "cut off mid-file", "empty.jpg": "   ", "again.jpg": "a re-upload"})
    upload(client, bucket, "art/descriptions-2026-12.json", json.dumps(new_descriptions).encode())

    second = repo.stage("snapshot")
    assert f"{len(month2) + 1} downloaded" in second.stdout  # the new objects only
    assert "14 unchanged" in second.stdout
    assert ran_stages(repo.dvc("repro", "split").stdout) == ["fetch", "split"]
    quality = json.loads((repo.root / "reports/data_quality.json").read_text())
    assert quality["datasets"]["art"] == {"read": 23, "accepted": 20, "quarantined": 2, "duplicates": 1}
    reasons = {q["id"]: q["reason"] for q in quality["quarantine"]}
    assert "image does not decode" in reasons["art/truncated.jpg"]
    assert "description is empty" in reasons["art/empty.jpg"]
    assert reasons["art/again.jpg"] == "duplicate"
    # Old records kept their split.
    for name, before in splits_month1.items():
        now = (repo.root / f"splits/art/{name}.jsonl").read_text()
        assert all(line in now for line in before.splitlines())

    # A month with nothing new: nothing downloaded, data.dvc unchanged, nothing re-runs.
    data_dvc = (repo.root / "data.dvc").read_text()
    third = repo.stage("snapshot")
    assert "0 downloaded" in third.stdout
    assert (repo.root / "data.dvc").read_text() == data_dvc
    assert ran_stages(repo.dvc("repro", "split").stdout) == []
