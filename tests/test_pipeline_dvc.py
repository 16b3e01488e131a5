"""The data pipeline driven by the real `dvc`: no-op re-runs, determinism, the S3 remote, past checkouts."""

from __future__ import annotations

import shutil

import pytest

from tests.pipeline_repo import PipelineRepo, ran_stages

pytestmark = pytest.mark.slow
DATA_STAGES = ("split",)  # `dvc repro split` runs fetch and split
# The model stages of dvc.yaml are not run here: every command names the data stages.
TARGETS = ("--with-deps", "data.dvc", "split")


@pytest.fixture
def repo(tmp_path):
    repo = PipelineRepo.clone(tmp_path / "clone")
    repo.stage("snapshot")
    return repo


def test_repro_after_repro_does_nothing(repo):
    first = repo.dvc("repro", *DATA_STAGES)
    assert ran_stages(first.stdout) == ["fetch", "split"]
    second = repo.dvc("repro", *DATA_STAGES)
    assert ran_stages(second.stdout) == []
    assert "Data and pipelines are up to date" in second.stdout
    # The snapshot step with nothing new upstream leaves data.dvc as it was.
    before = (repo.root / "data.dvc").read_text()
    out = repo.stage("snapshot")
    assert "0 downloaded" in out.stdout and (repo.root / "data.dvc").read_text() == before


def test_two_fresh_clones_give_identical_lock_hashes(repo, tmp_path):
    other = PipelineRepo.clone(tmp_path / "other")
    other.stage("snapshot")
    for r in (repo, other):
        r.dvc("repro", *DATA_STAGES)
    assert repo.lock()["stages"] == other.lock()["stages"]
    assert (repo.root / "data.dvc").read_text() == (other.root / "data.dvc").read_text()


def test_push_pull_and_checkout_of_a_past_commit(repo, s3_bucket, moto_endpoint):
    _, bucket = s3_bucket
    repo.dvc("remote", "modify", "--local", "storage", "url", f"s3://{bucket}/dvcstore")
    repo.dvc("remote", "modify", "--local", "storage", "endpointurl", moto_endpoint)
    repo.dvc("repro", *DATA_STAGES)
    repo.sh("git", "add", "-A")
    # A is the clone's state after repro: nothing new when the committed dvc.lock already matches the data.
    repo.sh("git", "commit", "--allow-empty", "-qm", "A")
    outputs = ("data", "corpus", "splits")
    at_a = repo.tree_digest(*outputs)

    # Push, lose the cache and the outputs, pull: byte-for-byte the same.
    repo.dvc("push", *TARGETS)
    for path in (".dvc/cache", *outputs):
        shutil.rmtree(repo.root / path)
    repo.dvc("pull", *TARGETS)
    assert repo.tree_digest(*outputs) == at_a

    # Commit B with another split; then go back to A.
    repo.set_params("split", salt="reprolab-v2")
    assert ran_stages(repo.dvc("repro", *DATA_STAGES).stdout) == ["split"]
    repo.sh("git", "commit", "-qam", "B")
    assert repo.tree_digest("splits") != {k: v for k, v in at_a.items() if k.startswith("splits/")}
    repo.sh("git", "checkout", "-q", "HEAD~1")
    repo.dvc("checkout", *TARGETS)
    assert repo.tree_digest(*outputs) == at_a
    status = repo.dvc("status", *TARGETS)
    assert "Data and pipelines are up to date" in status.stdout
