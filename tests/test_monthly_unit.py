"""The monthly script's pieces, fast: its config, the PR texts, the failure notice, the upstream override."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reprolab.data.corpus import FetchConfig
from reprolab.errors import ConfigError
from reprolab.monthly import (
    MonthlyConfig,
    MonthlyStepFailed,
    MonthResult,
    accepted_records,
    commit_message,
    failure_notice,
    records_added,
    run_step,
    summary_markdown,
    title_of,
)
from reprolab.profiles import UpstreamOverride, fallback_warning, is_samples, with_upstream

REPO = Path(__file__).resolve().parents[1]


def result(**kw) -> MonthResult:
    base = dict(month="2026-03", profile="embedded", branch="retrain/2026-03", base_branch="main",
                base="0123456789abcdef", source="s3://customer/upstream")
    return MonthResult(**{**base, **kw})


def test_config_names_a_bad_month_or_profile_and_derives_branches():
    with pytest.raises(ConfigError, match="expected YYYY-MM"):
        MonthlyConfig(month="2026-13")
    with pytest.raises(ConfigError, match="expected YYYY-MM"):
        MonthlyConfig(month="March")
    with pytest.raises(ConfigError, match="profile"):
        MonthlyConfig(month="2026-03", profile="../etc")
    embedded = MonthlyConfig(month="2026-03")
    assert (embedded.branch, embedded.target_branch) == ("retrain/2026-03", "main")
    production = MonthlyConfig(month="2026-03", profile="production")
    assert (production.branch, production.target_branch) == ("retrain/2026-03-production", "production")
    assert MonthlyConfig(month="2026-03", profile="production", base_branch="main").target_branch == "main"


def test_records_added_per_dataset_against_the_base():
    base = json.dumps({"datasets": {"art": {"accepted": 120}, "docs": {"accepted": 1}}})
    now = json.dumps({"datasets": {"art": {"accepted": 160}, "docs": {"accepted": 1}, "nlupp": {"accepted": 9}}})
    assert records_added(accepted_records(base), accepted_records(now)) == {"art": 40, "docs": 0, "nlupp": 9}
    assert accepted_records(None) == {}


def test_pr_texts_carry_the_month_the_records_and_no_ci_skip():
    r = result(changed=True, verdict="warn", records_added={"art": 40, "nlupp": 0},
               stages_run=["fetch", "split", "train_clip"])
    message = commit_message(r)
    assert "[skip ci]" not in message.lower() and "[ci skip]" not in message.lower()
    assert "2026-03" in message and "art +40" in message and "train_clip" in message
    assert title_of(r) == "Monthly retrain 2026-03 (embedded): art +40, nlupp +0; gate WARN"
    summary = summary_markdown(r)
    assert "**changed**: PR branch `retrain/2026-03` into `main`" in summary and "**WARN**" in summary


def test_a_month_with_nothing_new_says_so_and_a_fallback_is_loud():
    r = result(changed=False, records_added={"art": 0}, source="samples", source_is_samples=True,
               warnings=[fallback_warning("samples")])
    summary = summary_markdown(r)
    assert "**nothing changed**" in summary and "no PR" in summary
    assert "> [!WARNING]" in summary and "shipped samples" in summary and "UPSTREAM_PREFIX" in summary


def test_a_failed_step_raises_with_its_name_and_output_tail(tmp_path, capsys):
    r = result()
    with pytest.raises(MonthlyStepFailed, match=r"step 'repro' failed: .* exited 3\nboom") as err:
        run_step("repro", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], tmp_path, r)
    assert err.value.step == "repro" and r.steps[-1]["exit_code"] == 3
    assert "boom" in capsys.readouterr().out  # echoed live to the job log too
    with pytest.raises(MonthlyStepFailed, match="step 'push' failed: cannot start"):
        run_step("push", [str(tmp_path / "no-such-tool")], tmp_path, r)


def test_failure_notice_for_each_way_a_month_can_fail(tmp_path):
    assert "before the monthly script" in failure_notice(tmp_path)[0]
    (tmp_path / "result.json").write_text(json.dumps({"month": "2026-03", "verdict": "fail",
                                                      "branch": "retrain/2026-03"}))
    title, body = failure_notice(tmp_path)
    assert "regression gate failed" in title and "retrain/2026-03" in body
    (tmp_path / "result.json").write_text(json.dumps({"month": "2026-03", "verdict": "pass"}))
    assert "after the monthly script" in failure_notice(tmp_path)[0]
    (tmp_path / "failure.json").write_text(json.dumps({"month": "2026-03", "step": "push",
                                                       "error": "step 'push' failed: 403"}))
    title, body = failure_notice(tmp_path)
    assert title == "reprolab: monthly retrain 2026-03 failed at step 'push'" and "403" in body


def test_the_upstream_override_replaces_only_what_is_set(monkeypatch):
    cfg = FetchConfig(source="samples", endpoint_url=None, min_image_side=32)
    monkeypatch.delenv("REPROLAB_FETCH_SOURCE", raising=False)
    monkeypatch.setenv("REPROLAB_FETCH_ENDPOINT_URL", "")
    assert with_upstream(cfg, UpstreamOverride()) == cfg  # unset or empty: the params stand
    monkeypatch.setenv("REPROLAB_FETCH_SOURCE", " s3://customer/upstream ")
    got = with_upstream(cfg, UpstreamOverride())
    assert got.source == "s3://customer/upstream" and got.endpoint_url is None and got.min_image_side == 32
    assert is_samples("samples", REPO) and is_samples("./samples/", REPO)
    assert not is_samples("s3://bucket/samples", REPO) and not is_samples("/data/upstream", REPO)


def test_the_snapshot_stage_reads_the_override_not_the_params(tmp_path):
    upstream = tmp_path / "customer"
    (upstream / "docs").mkdir(parents=True)
    (upstream / "docs" / "kb.txt").write_text("knowledge\n")
    (tmp_path / "params.yaml").write_text("fetch:\n  source: samples\n")  # no samples/ here: would fail
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "REPROLAB_FETCH_SOURCE": str(upstream)}
    proc = subprocess.run([sys.executable, "-m", "stages.snapshot", "--no-dvc"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"from {upstream}: 1 downloaded" in proc.stdout
    assert (tmp_path / "data" / "docs" / "kb.txt").read_text() == "knowledge\n"
    assert (tmp_path / "params.yaml").read_text() == "fetch:\n  source: samples\n"


def test_the_pr_files_are_the_changed_results_and_never_params(tmp_path):
    from reprolab.monthly import pr_changes

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@t.invalid")
    git("config", "user.name", "t")
    for name in ("dvc.lock", "data.dvc", "params.yaml", "reports/clip/metrics.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    git("add", ".")
    git("commit", "-qm", "base")
    cfg = MonthlyConfig(month="2026-03", root=tmp_path)
    assert pr_changes(cfg) == []
    (tmp_path / "dvc.lock").write_text("v2\n")
    (tmp_path / "params.yaml").write_text("profile applied in the job\n")
    (tmp_path / "reports/cards").mkdir()
    (tmp_path / "reports/cards/clip é.md").write_text("new\n")
    assert sorted(pr_changes(cfg)) == ["dvc.lock", "reports/cards/clip é.md"]


@pytest.mark.parametrize("profile, offline", [(None, "1"), ("embedded", "1"), ("production", "")])
def test_the_makefile_is_offline_only_for_the_embedded_profile(profile, offline):
    show = 'show-offline: ; @echo "[$$HF_HUB_OFFLINE][$$TRANSFORMERS_OFFLINE]"'
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PROFILE")}
    args = ["make", "-s", "-C", str(REPO), "--eval", show, "show-offline"] + ([f"PROFILE={profile}"] if profile else [])
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == f"[{offline}][{offline}]"
