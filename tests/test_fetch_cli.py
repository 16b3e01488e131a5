"""Bad input to the snapshot and fetch commands: one clear message, no traceback, the old corpus intact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline_repo import REPO
from tests.test_data_readers import jpeg_bytes, make_art


def run_stage(cwd: Path, module: str) -> subprocess.CompletedProcess:
    # Outside a DVC repository here, so the snapshot step is told not to record itself in data.dvc.
    args = ["--no-dvc"] if module == "snapshot" else []
    return subprocess.run([sys.executable, "-m", f"stages.{module}", *args], cwd=cwd, capture_output=True,
                          text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"})


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "params.yaml").write_text("fetch:\n  source: upstream\n  min_image_side: 32\n")
    make_art(tmp_path / "upstream", {"a.jpg": jpeg_bytes(), "b.jpg": jpeg_bytes(color=(1, 2, 3))},
             {"a.jpg": "red", "b.jpg": "dark"})
    assert run_stage(tmp_path, "snapshot").returncode == 0
    assert run_stage(tmp_path, "fetch").returncode == 0
    return tmp_path


def corpus_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "corpus").rglob("*"))
            if p.is_file()}


def assert_clean_failure(proc: subprocess.CompletedProcess, stage: str, message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"error: {stage}: " in proc.stderr and message in proc.stderr, proc.stderr


def test_missing_source(workdir):
    (workdir / "params.yaml").write_text("fetch:\n  source: nowhere\n")
    assert_clean_failure(run_stage(workdir, "snapshot"), "snapshot", "source folder 'nowhere' does not exist")


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda d: (d / "art/descriptions.json").write_bytes(b'{"a.jpg": "caf\xe9"}'), "is not UTF-8"),
        (lambda d: (d / "art/descriptions.json").write_text('["a.jpg"]'), "expected a JSON object"),
        (lambda d: (d / "art/descriptions.json").write_text('{"a.jpg": '), "is not valid JSON"),
    ],
)
def test_a_broken_descriptions_file_fails_cleanly_and_keeps_the_corpus(workdir, break_it, message):
    before = corpus_files(workdir)
    break_it(workdir / "upstream")
    assert run_stage(workdir, "snapshot").returncode == 0  # the snapshot mirrors bytes; fetch judges them
    assert_clean_failure(run_stage(workdir, "fetch"), "fetch", message)
    assert corpus_files(workdir) == before


def test_a_truncated_jpeg_is_quarantined_not_fatal(workdir):
    (workdir / "upstream/art/images/b.jpg").write_bytes(jpeg_bytes(color=(1, 2, 3))[:300])
    assert run_stage(workdir, "snapshot").returncode == 0
    proc = run_stage(workdir, "fetch")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((workdir / "reports/data_quality.json").read_text())
    assert report["datasets"]["art"]["quarantined"] == 1
    assert "image does not decode" in report["quarantine"][0]["reason"]
    assert sorted(corpus_files(workdir)) == ["corpus/art/images/a.jpg", "corpus/art/records.jsonl",
                                             "corpus/manifest.json"]
