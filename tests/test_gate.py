"""The regression gate on per-example evidence: noise passes, significant drops fail, directions are declared,
and `python -m stages.gate` fails + notifies on a fail verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reprolab.evaluation.evidence import EvidenceError, MetricSpec, evaluate_variants, paired_change
from reprolab.evaluation.gate import GateConfig, ModelEvidence, judge
from tests.notify_receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]

CFG = GateConfig(floors={"clip.i2t_recall@5": 0.10}, max_drop={"*": 0.05}, warn_drop={"*": 0.02})
SPECS = [MetricSpec("i2t_recall@5", "higher", "mean", ("i2t_hit@5",)),
         MetricSpec("false_refusal_rate", "lower", "mean", ("declined",), where="answerable"),
         MetricSpec("test_images", "count", "count", ("one",))]


def rows(n: int = 200, hit_rate: float = 0.6, declined_rate: float = 0.3, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"id": f"img{i:04d}", "variant": "finetuned", "i2t_hit@5": bool(rng.random() < hit_rate),
             "answerable": True, "declined": bool(rng.random() < declined_rate), "one": 1} for i in range(n)]


def evidence(example_rows: list[dict], name: str = "clip", specs=SPECS) -> ModelEvidence:
    evaluation = {"headline_variant": "finetuned", "specs": [s.to_dict() for s in specs],
                  "variants": evaluate_variants(specs, example_rows)}
    return ModelEvidence(name, evaluation, example_rows)


def verdict_for(new_rows: list[dict], base_rows: list[dict], cfg: GateConfig = CFG, **kw):
    new, base = evidence(new_rows), evidence(base_rows)
    values = {"clip": {m: e["value"] for m, e in base.headline().items()}}
    return judge({"clip": new}, {"clip": base}, values, cfg, **kw)


def levels(verdict) -> dict[str, str]:
    return {f.metric: f.level for f in verdict.findings}


def outcome(verdict, metric: str) -> str:
    return next(c.outcome for c in verdict.comparisons if c.metric == metric)


def test_a_rebuild_that_flips_one_example_passes_as_within_noise():
    base = rows()
    new = [dict(r) for r in base]
    first_hit = next(i for i, r in enumerate(new) if r["i2t_hit@5"])
    new[first_hit]["i2t_hit@5"] = False  # one image of 200 drops out of the top 5
    verdict = verdict_for(new, base)
    assert verdict.status == "pass", verdict.findings
    assert outcome(verdict, "i2t_recall@5") == "within noise"
    change = next(c.change for c in verdict.comparisons if c.metric == "i2t_recall@5")
    assert change.diff == pytest.approx(-1 / 200) and change.low < 0 <= change.high


def test_a_significant_drop_beyond_max_drop_fails():
    base = rows()
    new = [dict(r, **{"i2t_hit@5": False}) if i % 3 == 0 else dict(r) for i, r in enumerate(base)]  # ~ -0.2
    verdict = verdict_for(new, base)
    assert verdict.status == "fail"
    assert levels(verdict) == {"clip.i2t_recall@5": "fail"}
    assert outcome(verdict, "i2t_recall@5") == "worse"
    assert "paired 95% interval" in verdict.findings[0].message


def test_a_large_but_noisy_drop_on_few_examples_never_warns():
    base = rows(n=12)
    new = [dict(r) for r in base]
    flipped = [i for i, r in enumerate(new) if r["i2t_hit@5"]][:1]
    for i in flipped:
        new[i]["i2t_hit@5"] = False  # -1/12 = -0.083, beyond max_drop, but one example
    verdict = verdict_for(new, base)
    assert outcome(verdict, "i2t_recall@5") == "within noise"
    assert verdict.status == "pass", verdict.findings


def test_halving_false_refusals_is_better():
    base = rows(declined_rate=0.4)
    new = [dict(r, declined=False) if i % 2 == 0 else dict(r) for i, r in enumerate(base)]
    verdict = verdict_for(new, base)
    assert outcome(verdict, "false_refusal_rate") == "better"
    assert verdict.status == "pass", verdict.findings


def test_doubling_false_refusals_fails():
    base = rows(declined_rate=0.1)
    new = [dict(r, declined=True) if i % 4 == 0 else dict(r) for i, r in enumerate(base)]
    verdict = verdict_for(new, base)
    assert outcome(verdict, "false_refusal_rate") == "worse"
    assert levels(verdict).get("clip.false_refusal_rate") == "fail"


def test_counts_never_gate_and_floors_stay_absolute():
    base = rows()
    new = [dict(r, **{"i2t_hit@5": False}) for r in base[:150]]  # fewer images (a count), recall 0: floor
    verdict = verdict_for(new, base)
    assert outcome(verdict, "test_images") == "count"
    assert "clip.test_images" not in levels(verdict)
    assert any("under its floor" in f.message for f in verdict.findings)
    no_base = judge({"clip": evidence(new)}, {}, {}, CFG, has_base=False)
    assert no_base.status == "fail" and "under its floor" in no_base.findings[0].message


def test_new_ids_are_scored_beside_the_paired_change():
    base = rows(n=100)
    new = rows(n=100) + [dict(r, id=f"new{i:03d}", **{"i2t_hit@5": True})
                         for i, r in enumerate(rows(n=20, seed=5))]
    change = paired_change(SPECS[0], base, new)
    assert change.n_shared == 100 and change.n_new_only == 20
    assert change.diff == 0 and change.new_only == 1.0


def test_a_metric_without_a_declared_direction_is_refused():
    ev = evidence(rows())
    ev.evaluation["variants"]["finetuned"]["mystery"] = {"value": 0.5, "low": 0.4, "high": 0.6, "n": 10}
    with pytest.raises(EvidenceError, match="mystery has no declared direction"):
        judge({"clip": ev}, {}, {}, CFG, has_base=False)
    with pytest.raises(EvidenceError, match="direction must be one of"):
        MetricSpec("x", "up", "mean", ("x",))


def test_a_base_without_per_example_rows_warns_that_changes_are_untested():
    new = evidence(rows())
    verdict = judge({"clip": new}, {}, {"clip": {"i2t_recall@5": 0.61}}, CFG)
    assert outcome(verdict, "i2t_recall@5") == "untested"
    assert verdict.status == "warn" and "cannot be tested" in verdict.findings[0].message


def test_a_metric_that_disappeared_drift_and_more_quarantined_records_warn():
    base = rows()
    verdict = verdict_for(base, base, drift=["caption length mean 41 -> 80"],
                          data_rises={"art": {"quarantined": 25, "duplicates": 0}})
    messages = " ".join(f.message for f in verdict.findings)
    assert verdict.status == "warn"
    assert "drift: caption length" in messages and "25 more quarantined" in messages
    values = {"clip": {"i2t_recall@5": 0.6, "gone_metric": 0.5}}
    gone = judge({"clip": evidence(base)}, {"clip": evidence(base)}, values, CFG)
    assert any("gone_metric measured at the base revision but not now" in f.message for f in gone.findings)


def run_gate(tmp_path: Path, verdict: dict, env: dict) -> subprocess.CompletedProcess:
    (tmp_path / "reports").mkdir(exist_ok=True)
    (tmp_path / "reports" / "gate.json").write_text(json.dumps(verdict), encoding="utf-8")
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("SLACK_", "GITHUB_", "NOTIFY_"))}
    full_env.update({"PYTHONPATH": str(ROOT), **env})
    return subprocess.run([sys.executable, "-m", "stages.gate"], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=120)


def failing_verdict() -> dict:
    base = rows()
    new = [dict(r, **{"i2t_hit@5": False}) if i % 3 == 0 else dict(r) for i, r in enumerate(base)]
    return {"base": "0123456789abcdef0123456789abcdef01234567", **verdict_for(new, base).to_dict()}


def test_stage_fails_and_notifies_once_after_a_500(tmp_path):
    verdict = failing_verdict()
    assert verdict["status"] == "fail"
    with Receiver([500, 200]) as rx:
        proc = run_gate(tmp_path, verdict, {"SLACK_WEBHOOK_URL": rx.url + "/hook", "NOTIFY_BACKOFF_S": "0.05",
                                            "NOTIFY_RUN_URL": "https://ci/run/1"})
    assert proc.returncode == 2, proc.stderr
    assert "gate: FAIL against 01234567" in proc.stdout
    assert "failed the gate (notified: webhook)" in proc.stderr
    assert len(rx.requests) == 2  # one failed attempt, exactly one delivered message
    text = rx.requests[-1].body["text"]
    assert "regression gate failed" in text and "clip.i2t_recall@5 worse by" in text
    assert "Run: https://ci/run/1" in text


def test_stage_fails_even_when_notifying_fails(tmp_path):
    with Receiver([500]) as rx:
        proc = run_gate(tmp_path, failing_verdict(), {"SLACK_WEBHOOK_URL": rx.url + "/T0/B0/secret",
                                                      "NOTIFY_BACKOFF_S": "0.01", "NOTIFY_RETRIES": "1"})
    assert proc.returncode == 2
    assert "notifying failed too" in proc.stderr
    assert "secret" not in proc.stderr + proc.stdout  # the webhook URL is a credential
    assert len(rx.requests) == 2


def test_stage_passes_a_pass_verdict_without_notifying(tmp_path):
    base = rows()
    verdict = {"base": "0" * 40, **verdict_for(base, base).to_dict()}
    with Receiver([200]) as rx:
        proc = run_gate(tmp_path, verdict, {"SLACK_WEBHOOK_URL": rx.url})
    assert proc.returncode == 0, proc.stderr
    assert rx.requests == []


def test_stage_without_a_verdict_says_what_to_run(tmp_path):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "stages.gate"], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "run `make report` first" in proc.stderr
    assert "Traceback" not in proc.stderr
