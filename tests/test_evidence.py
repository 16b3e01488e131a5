"""Per-example evidence: metrics recomputed from rows, seeded intervals, and the committed evaluations.

The last tests read the per-example results the pipeline committed under reports/: every headline metric has
a declared direction, and the gate fails a real regression (the extractor without its adapter, CLIP with
untrained heads) because its drop is significant, while a rebuild that flips one example passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reprolab.config import load_section
from reprolab.evaluation.evidence import (EvidenceError, MetricSpec, by_variant, estimate, evaluate_variants,
                                          headline_only, read_examples, write_evaluation)
from reprolab.evaluation.gate import ModelEvidence, judge
from reprolab.evaluation.summary import EvaluateConfig, check_recomputed

ROOT = Path(__file__).resolve().parents[1]


def test_micro_f1_and_where_filters_match_hand_computation():
    rows = [{"id": "a", "variant": "v", "tp": 2, "fp": 0, "fn": 1, "answerable": True, "declined": True},
            {"id": "b", "variant": "v", "tp": 0, "fp": 1, "fn": 0, "answerable": False, "declined": True},
            {"id": "c", "variant": "v", "tp": 1, "fp": 1, "fn": 0, "answerable": True, "declined": False}]
    f1 = estimate(MetricSpec("f1", "higher", "f1", ("tp", "fp", "fn")), rows)
    assert f1.value == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    refusals = estimate(MetricSpec("frr", "lower", "mean", ("declined",), where="answerable"), rows)
    assert refusals.value == pytest.approx(0.5) and refusals.n == 2
    count = estimate(MetricSpec("answerable", "count", "count", ("answerable",)), rows)
    assert count.value == 2


def test_intervals_are_seeded_and_contain_the_value():
    rows = [{"id": f"{i:03d}", "variant": "v", "hit": i % 3 == 0} for i in range(120)]
    spec = MetricSpec("r", "higher", "mean", ("hit",))
    a, b = estimate(spec, rows, seed=0), estimate(spec, rows, seed=0)
    assert a == b
    assert a.low < a.value < a.high
    assert 0.05 < a.half_width < 0.12  # binomial: 1.96 * sqrt(p(1-p)/n) = 0.084


def test_bad_rows_are_named():
    spec = MetricSpec("r", "higher", "mean", ("hit",))
    with pytest.raises(EvidenceError, match="needs the per-example field 'hit'.*id x"):
        estimate(spec, [{"id": "x", "variant": "v"}, {"id": "y", "variant": "v", "hit": 1}])
    with pytest.raises(EvidenceError, match="must be a number or boolean"):
        estimate(spec, [{"id": "x", "variant": "v", "hit": "yes"}])
    with pytest.raises(EvidenceError, match="an id appears twice"):
        by_variant([{"id": "x", "variant": "v"}, {"id": "x", "variant": "v"}])
    with pytest.raises(EvidenceError, match="kind f1 takes 3 fields"):
        MetricSpec("f", "higher", "f1", ("tp",))


def test_write_evaluation_keeps_only_the_headline_in_metrics_and_is_recomputable(tmp_path):
    specs = [MetricSpec("r", "higher", "mean", ("hit",))]
    rows = [{"id": str(i), "variant": v, "hit": (i + k) % 2 == 0} for i in range(30)
            for k, v in enumerate(["base", "tuned"])]
    write_evaluation(tmp_path, specs, rows, "tuned", extra={"chance": 0.1})
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert headline_only(metrics) == {"r": 0.5} and set(evaluation["variants"]) == {"base", "tuned"}
    # Every variant sits in metrics.json too, with its interval: the baselines are read where the headline is.
    assert set(metrics["variants"]) == {"base", "tuned"}
    assert set(metrics["variants"]["base"]["r"]) == {"value", "low", "high", "n"}
    assert metrics["variants"]["base"]["r"]["low"] <= metrics["variants"]["base"]["r"]["value"]
    assert read_examples(tmp_path / "examples.jsonl") == sorted(rows, key=lambda r: (r["variant"], r["id"]))
    evidence = ModelEvidence("m", evaluation, read_examples(tmp_path / "examples.jsonl"))
    check_recomputed(evidence, metrics, "m")
    with pytest.raises(EvidenceError, match="per-example rows give"):
        check_recomputed(evidence, {**metrics, "r": 0.9}, "m")
    with pytest.raises(EvidenceError, match="no declared direction"):
        check_recomputed(evidence, {**metrics, "other": 1.0}, "m")
    stale = json.loads(json.dumps(metrics))
    stale["variants"]["base"]["r"]["high"] = 1.0
    with pytest.raises(EvidenceError, match="block differs from evaluation.json"):
        check_recomputed(evidence, stale, "m")


# --- the committed evaluations of the pipeline --------------------------------------------------------------

def committed() -> dict[str, ModelEvidence]:
    cfg = load_section("evaluate", EvaluateConfig, ROOT / "params.yaml")
    found = {}
    for name, spec in cfg.models.items():
        folder = ROOT / spec.folder
        if (folder / "evaluation.json").is_file():
            found[name] = ModelEvidence(name, json.loads((folder / "evaluation.json").read_text()),
                                        read_examples(folder / "examples.jsonl"))
    return found


def test_every_committed_headline_metric_is_declared_and_recomputed():
    cfg = load_section("evaluate", EvaluateConfig, ROOT / "params.yaml")
    models = committed()
    assert set(models) == set(cfg.models), "every model's stage commits its evaluation and per-example rows"
    for name, evidence in models.items():
        metrics = json.loads((ROOT / cfg.models[name].metrics).read_text())
        assert 2 <= len(headline_only(metrics)) <= 8, f"{name}: a handful of headline metrics keeps it readable"
        assert set(metrics["variants"]) == set(evidence.evaluation["variants"]), f"{name}: every variant, with intervals"
        check_recomputed(evidence, metrics, name)
        for spec in evidence.specs.values():
            assert spec.direction in ("higher", "lower", "count")


def as_headline(evidence: ModelEvidence, variant: str) -> ModelEvidence:
    """The same evaluation with another variant served: what shipping that variant instead would report."""
    rows = [dict(r, variant=evidence.variant) for r in by_variant(evidence.rows)[variant]]
    specs = list(evidence.specs.values())
    evaluation = {**evidence.evaluation, "variants": evaluate_variants(specs, rows)}
    return ModelEvidence(evidence.name, evaluation, rows)


@pytest.mark.parametrize("model,untrained", [("clip", "baseline"), ("llm", "zero_shot_constrained")])
def test_the_gate_fails_a_real_regression_on_the_committed_test_examples(model, untrained):
    cfg = load_section("evaluate", EvaluateConfig, ROOT / "params.yaml")
    base = committed()[model]
    new = as_headline(base, untrained)  # CLIP with untrained heads; the extractor without its adapter
    values = {model: {m: e["value"] for m, e in base.headline().items()}}
    verdict = judge({model: new}, {model: base}, values, cfg.gate)
    assert verdict.status == "fail", verdict.findings
    assert any(c.outcome == "worse" for c in verdict.comparisons)


@pytest.mark.parametrize("model", ["clip", "llm", "rag"])
def test_the_gate_passes_a_rebuild_that_flips_one_committed_example(model):
    cfg = load_section("evaluate", EvaluateConfig, ROOT / "params.yaml")
    base = committed()[model]
    rows = [dict(r) for r in base.headline_rows()]
    spec = next(s for s in base.specs.values() if s.direction != "count")
    field = spec.fields[0]
    flip = next(r for r in rows if isinstance(r.get(field), bool) or isinstance(r.get(field), int))
    flip[field] = (not flip[field]) if isinstance(flip[field], bool) else flip[field] + 1
    new = ModelEvidence(model, {**base.evaluation, "variants": {
        base.variant: evaluate_variants(list(base.specs.values()), rows)[base.variant]}}, rows)
    models = committed()  # the other models rebuilt unchanged
    values = {name: {m: e["value"] for m, e in ev.headline().items()} for name, ev in models.items()}
    verdict = judge({**models, model: new}, models, values, cfg.gate)
    assert verdict.status == "pass", verdict.findings
