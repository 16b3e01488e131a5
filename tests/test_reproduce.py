"""README "Reproduce any past model", run for real: tag a model version, change a param, repro, push to S3 (moto), then bring
the old model back by tag, in the same clone (dvc checkout) and in a fresh clone (dvc pull), hash-equal to
its dvc.lock; and by name with `dvc artifacts get`. A tiny repo with a one-line stage, not the real pipeline.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reprolab.registry import RegistryError, register

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

TRAIN = ("python -c \"import os, yaml; p = yaml.safe_load(open('params.yaml'))['train']; "
         "os.makedirs('models/model', exist_ok=True); "
         "open('models/model/weights.txt', 'w').write('weights for seed %d\\n' % p['seed'] * 100)\"")

DVC_YAML = {
    "artifacts": {"model": {"path": "models/model", "type": "model", "desc": "toy model", "labels": ["toy"]}},
    "stages": {"train": {"cmd": TRAIN, "params": ["train"], "outs": ["models/model"]}},
}


class Repo:
    def __init__(self, root: Path):
        self.root = root

    def sh(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(REPO),
                   DVC_NO_ANALYTICS="1")
        proc = subprocess.run(cmd, cwd=self.root, env=env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.sh(str(VENV_BIN / "dvc"), *args, check=check)

    def git_identity(self) -> None:
        self.sh("git", "config", "user.email", "test@reprolab.invalid")
        self.sh("git", "config", "user.name", "reprolab tests")

    def use_remote(self, url: str, endpoint: str) -> None:
        """As README "DVC remote": the committed remote `storage`, pointed elsewhere in .dvc/config.local."""
        self.dvc("remote", "modify", "--local", "storage", "url", url)
        self.dvc("remote", "modify", "--local", "storage", "endpointurl", endpoint)

    def set_seed(self, seed: int) -> None:
        (self.root / "params.yaml").write_text(yaml.safe_dump({"train": {"seed": seed}}))

    def lock_md5(self) -> str:
        lock = yaml.safe_load((self.root / "dvc.lock").read_text())
        return lock["stages"]["train"]["outs"][0]["md5"]

    def digest(self, top: str = "models/model") -> dict[str, str]:
        return {p.relative_to(self.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted((self.root / top).rglob("*")) if p.is_file()}

    def up_to_date(self) -> bool:
        return "Data and pipelines are up to date" in self.dvc("status").stdout


@pytest.mark.slow
def test_reproduce_a_past_model_by_tag(tmp_path, s3_bucket, moto_endpoint):
    _, bucket = s3_bucket
    remote = f"s3://{bucket}/store"
    origin = Repo(tmp_path / "origin")
    origin.root.mkdir()
    origin.sh("git", "init", "-q", "-b", "main")
    origin.git_identity()
    origin.dvc("init", "-q")
    origin.dvc("remote", "add", "-d", "storage", "s3://reprolab-dvc/store")  # the committed default
    origin.use_remote(remote, moto_endpoint)
    (origin.root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))

    # Commit A, registered as the October model.
    origin.set_seed(1)
    origin.dvc("repro")
    origin.sh("git", "add", ".")  # our own throw-away repo; .dvc/config.local stays ignored
    origin.sh("git", "commit", "-qm", "A")
    out = origin.sh(sys.executable, "-m", "reprolab.registry", "tag", "--month", "2026-10").stdout
    assert "model: registered model@v2026.10.0" in out
    at_a, md5_a = origin.digest(), origin.lock_md5()
    # Tagging again is a no-op.
    assert [r.created for r in register(origin.root, month="2026-10")] == [False]

    # Commit B: another param, another model, registered as November's.
    origin.set_seed(2)
    origin.dvc("repro")
    origin.sh("git", "commit", "-qam", "B")
    [b] = register(origin.root, month="2026-11")
    assert (b.created, b.tag) == (True, "model@v2026.11.0")
    assert origin.digest() != at_a and origin.lock_md5() != md5_a
    # Commit C changes no model: nothing new to register.
    (origin.root / "NOTES").write_text("docs only\n")
    origin.sh("git", "add", "NOTES")
    origin.sh("git", "commit", "-qm", "C")
    [c] = register(origin.root, month="2026-11")
    assert not c.created and c.reason == "unchanged since its latest version" and c.tag == "model@v2026.11.0"
    # Tags are annotated (GTO and `dvc artifacts get` ignore lightweight ones).
    assert origin.sh("git", "cat-file", "-t", "model@v2026.10.0").stdout.strip() == "tag"

    origin.dvc("push", "--all-commits")

    # Same clone: check the tag out, `dvc checkout` restores A's model from the local cache.
    origin.sh("git", "checkout", "-q", "model@v2026.10.0")
    origin.dvc("checkout")
    assert origin.digest() == at_a and origin.up_to_date()
    # Rebuilding instead of fetching: the same md5 as A's dvc.lock.
    shutil.rmtree(origin.root / "models" / "model")
    assert "Running stage 'train'" in origin.dvc("repro", "--force").stdout  # --force: no run-cache shortcut
    origin.sh("git", "diff", "--exit-code", "dvc.lock")
    assert origin.digest() == at_a and origin.up_to_date()
    origin.sh("git", "checkout", "-q", "main")
    origin.dvc("checkout")

    # Fresh clone, empty cache: git checkout <tag>; dvc pull; hash-equal to A's dvc.lock.
    clone = Repo(tmp_path / "clone")
    subprocess.run(["git", "clone", "-q", str(origin.root), str(clone.root)], check=True)
    clone.use_remote(remote, moto_endpoint)
    clone.sh("git", "checkout", "-q", "model@v2026.10.0")
    assert not (clone.root / "models" / "model").exists()  # only models/.gitignore came with git
    clone.dvc("pull")
    assert clone.digest() == at_a
    assert clone.lock_md5() == md5_a
    assert clone.up_to_date()
    # ... and B's from the same remote.
    clone.sh("git", "checkout", "-q", "model@v2026.11.0")
    clone.dvc("pull")
    assert clone.digest() != at_a and clone.up_to_date()

    # By name, without a checkout: `dvc artifacts get <repo> model --rev v2026.10.0`, from the remote only
    # (the origin's cache is gone). Works with a local git repo: versions are read from its tags.
    shutil.rmtree(origin.root / ".dvc" / "cache")
    got = tmp_path / "got"
    origin.dvc("artifacts", "get", str(origin.root), "model", "--rev", "v2026.10.0", "-o", str(got))
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in got.rglob("*") if p.is_file()} == {
        Path(k).name: v for k, v in at_a.items()}


def test_registry_refuses_bad_input(tmp_path):
    repo = Repo(tmp_path)
    repo.sh("git", "init", "-q", "-b", "main")
    repo.git_identity()
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": DVC_YAML["stages"]}))
    repo.sh("git", "add", "dvc.yaml")
    repo.sh("git", "commit", "-qm", "no artifacts")
    with pytest.raises(RegistryError, match="declares no `artifacts:`"):
        register(tmp_path)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    repo.sh("git", "commit", "-qam", "artifacts, but no dvc.lock")
    with pytest.raises(RegistryError, match="unknown artifact"):
        register(tmp_path, only=["clip"])
    with pytest.raises(RegistryError, match="expected YYYY-MM"):
        register(tmp_path, month="2026-13")
    [r] = register(tmp_path, month="2026-03")
    assert not r.created and "no entry in dvc.lock" in r.reason
    assert repo.sh("git", "tag").stdout == ""
