"""A throw-away clone of this repository for tests that drive the real `dvc` and stage commands."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


class PipelineRepo:
    def __init__(self, root: Path, code_root: Path | None = None):
        self.root = root
        self.code_root = code_root or root  # where `python -m stages.*` is imported from

    @classmethod
    def clone(cls, dest: Path) -> PipelineRepo:
        subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
        repo = cls(dest)
        repo.sh("git", "config", "user.email", "test@reprolab.invalid")
        repo.sh("git", "config", "user.name", "reprolab tests")
        return repo

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DVC_NO_ANALYTICS="1", MPLBACKEND="Agg",
                   PYTHONPATH=str(self.code_root))
        return env

    def sh(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, cwd=self.root, env=self.env(), capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.sh(str(VENV_BIN / "dvc"), *args, check=check)

    def stage(self, module: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.sh(sys.executable, "-m", f"stages.{module}", *args, check=check)

    def set_params(self, section: str, **values) -> None:
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        params[section].update(values)
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    def lock(self) -> dict:
        return yaml.safe_load((self.root / "dvc.lock").read_text())

    def tree_digest(self, *paths: str) -> dict[str, str]:
        """sha256 of every file under the given paths, keyed by repo-relative path."""
        digests = {}
        for top in paths:
            for p in sorted((self.root / top).rglob("*")):
                if p.is_file():
                    digests[p.relative_to(self.root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
        return digests


def ran_stages(output: str) -> list[str]:
    """Names of the stages `dvc repro` actually ran, from its output."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]
