"""The regression gate: verdicts from reprolab.evaluation.gate, and `python -m stages.gate` failing + notifying."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reprolab.evaluation.gate import GateConfig, direction, judge
from tests.notify_receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]

CFG = GateConfig(
    floors={"clip.finetuned.i2t_recall@5": 0.10},
    max_drop={"*recall@*": 0.05},
    warn_drop={"*recall@*": 0.02},
)
BASE = {"clip.finetuned.i2t_recall@5": 0.60, "clip.finetuned.t2i_recall@5": 0.55,
        "clip.finetuned.i2t_median_rank": 3.0}


def levels(verdict) -> dict[str, str]:
    return {f.metric: f.level for f in verdict.findings}


def test_a_recall_drop_beyond_max_drop_fails():
    new = {**BASE, "clip.finetuned.i2t_recall@5": 0.50}  # -0.10 > 0.05
    verdict = judge(new, BASE, CFG)
    assert verdict.status == "fail"
    assert levels(verdict) == {"clip.finetuned.i2t_recall@5": "fail"}
    assert "0.6 -> 0.5" in verdict.findings[0].message


def test_a_smaller_drop_warns():
    new = {**BASE, "clip.finetuned.t2i_recall@5": 0.52}  # -0.03: past warn (0.02), within max (0.05)
    verdict = judge(new, BASE, CFG)
    assert verdict.status == "warn"
    assert levels(verdict) == {"clip.finetuned.t2i_recall@5": "warn"}


def test_a_tiny_drop_or_a_gain_passes():
    new = {**BASE, "clip.finetuned.i2t_recall@5": 0.59, "clip.finetuned.t2i_recall@5": 0.70}
    verdict = judge(new, BASE, CFG)
    assert verdict.status == "pass" and verdict.findings == []


def test_exactly_at_the_limit_is_not_a_failure():
    new = {**BASE, "clip.finetuned.i2t_recall@5": 0.55}  # exactly max_drop (float noise aside)
    assert judge(new, BASE, CFG).status == "warn"


def test_a_value_under_its_floor_fails_even_without_a_base():
    verdict = judge({"clip.finetuned.i2t_recall@5": 0.05}, None, CFG)
    assert verdict.status == "fail" and "under its floor" in verdict.findings[0].message


def test_lower_is_better_metrics_fail_when_they_rise():
    cfg = GateConfig(max_drop={"*median_rank": 2.0})
    assert direction("clip.finetuned.i2t_median_rank", cfg) == -1
    assert judge({"clip.finetuned.i2t_median_rank": 6.0}, BASE, cfg).status == "fail"  # 3 -> 6: worse by 3
    assert judge({"clip.finetuned.i2t_median_rank": 1.0}, BASE, cfg).status == "pass"  # better


def test_a_gated_metric_that_disappeared_warns_and_drift_warns():
    new = {k: v for k, v in BASE.items() if k != "clip.finetuned.t2i_recall@5"}
    verdict = judge(new, BASE, CFG, drift=["caption length mean 41 -> 80"])
    assert verdict.status == "warn"
    messages = " ".join(f.message for f in verdict.findings)
    assert "not now" in messages and "drift: caption length" in messages


def run_gate(tmp_path: Path, verdict: dict, env: dict) -> subprocess.CompletedProcess:
    (tmp_path / "reports").mkdir(exist_ok=True)
    (tmp_path / "reports" / "gate.json").write_text(json.dumps(verdict), encoding="utf-8")
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("SLACK_", "GITHUB_", "NOTIFY_"))}
    full_env.update({"PYTHONPATH": str(ROOT), **env})
    return subprocess.run([sys.executable, "-m", "stages.gate"], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=120)


def verdict_of(new: dict) -> dict:
    return {"base": "0123456789abcdef0123456789abcdef01234567", **judge(new, BASE, CFG).to_dict()}


def test_stage_fails_and_notifies_once_after_a_500(tmp_path):
    verdict = verdict_of({**BASE, "clip.finetuned.i2t_recall@5": 0.40})
    assert verdict["status"] == "fail"
    with Receiver([500, 200]) as rx:
        proc = run_gate(tmp_path, verdict, {"SLACK_WEBHOOK_URL": rx.url + "/hook", "NOTIFY_BACKOFF_S": "0.05",
                                            "NOTIFY_RUN_URL": "https://ci/run/1"})
    assert proc.returncode == 2, proc.stderr
    assert "gate: FAIL against 01234567" in proc.stdout
    assert "failed the gate (notified: webhook)" in proc.stderr
    assert len(rx.requests) == 2  # one failed attempt, exactly one delivered message
    text = rx.requests[-1].body["text"]
    assert "regression gate failed" in text and "clip.finetuned.i2t_recall@5 fell 0.6 -> 0.4" in text
    assert "Run: https://ci/run/1" in text


def test_stage_fails_even_when_notifying_fails(tmp_path):
    verdict = verdict_of({**BASE, "clip.finetuned.i2t_recall@5": 0.40})
    with Receiver([500]) as rx:
        proc = run_gate(tmp_path, verdict, {"SLACK_WEBHOOK_URL": rx.url + "/T0/B0/secret",
                                            "NOTIFY_BACKOFF_S": "0.01", "NOTIFY_RETRIES": "1"})
    assert proc.returncode == 2
    assert "notifying failed too" in proc.stderr
    assert "secret" not in proc.stderr + proc.stdout  # the webhook URL is a credential
    assert len(rx.requests) == 2


@pytest.mark.parametrize("new", [{**BASE, "clip.finetuned.t2i_recall@5": 0.52}, BASE], ids=["warn", "pass"])
def test_stage_passes_warn_and_pass_without_notifying(tmp_path, new):
    with Receiver([200]) as rx:
        proc = run_gate(tmp_path, verdict_of(new), {"SLACK_WEBHOOK_URL": rx.url})
    assert proc.returncode == 0, proc.stderr
    assert rx.requests == []


def test_stage_without_a_verdict_says_what_to_run(tmp_path):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "stages.gate"], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "run `make report` first" in proc.stderr
    assert "Traceback" not in proc.stderr
