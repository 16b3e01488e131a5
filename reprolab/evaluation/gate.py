"""The regression gate: absolute floors, and drops against the base revision that are larger than noise.

Each metric's direction comes from its declaration (`MetricSpec.direction`, written into the model's
evaluation.json by the stage that produced it), never from its name. A change is judged on the test ids both
revisions evaluated, by the paired 95% bootstrap interval of `new - base`:

- `fail`: a metric under its floor (over its ceiling when lower is better), or a drop beyond `max_drop` whose
  paired interval excludes zero;
- `warn`: a significant drop beyond `warn_drop`, a metric or model that disappeared, a base revision without
  per-example results (its changes cannot be tested), data drift, a rise in quarantined or duplicate records;
- a drop whose interval contains zero is "within noise" and never warns; counts never gate.

Thresholds are glob patterns over `<model>.<metric>` (`clip.*recall@5`); the first pattern that matches wins.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase

from pydantic import Field

from reprolab.config import StrictConfig
from reprolab.evaluation.evidence import Change, EvidenceError, MetricSpec, by_variant, declared, paired_change

ORDER = {"pass": 0, "warn": 1, "fail": 2}
SIGN = {"higher": 1, "lower": -1, "count": 0}


class GateConfig(StrictConfig):
    floors: dict[str, float] = Field(default_factory=dict)  # pattern -> absolute minimum (maximum if lower is better)
    max_drop: dict[str, float] = Field(default_factory=dict)  # pattern -> largest significant drop that passes
    warn_drop: dict[str, float] = Field(default_factory=dict)  # pattern -> significant drop that warns
    data_warn: dict[str, int] = Field(default_factory=lambda: {"quarantined": 20, "duplicates": 50})  # rise that warns


def _first(patterns: dict[str, float], name: str) -> float | None:
    return next((value for pattern, value in patterns.items() if fnmatchcase(name, pattern)), None)


@dataclass
class ModelEvidence:
    """One model's evaluation at one revision: its evaluation.json and per-example rows (None: not recorded)."""

    name: str
    evaluation: dict
    rows: list[dict] | None

    @property
    def variant(self) -> str:
        return self.evaluation["headline_variant"]

    @property
    def specs(self) -> dict[str, MetricSpec]:
        return declared(self.evaluation)

    def headline(self) -> dict[str, dict]:
        """{metric: {"value", "low", "high", "n"}} of the headline variant."""
        return self.evaluation["variants"][self.variant]

    def headline_rows(self) -> list[dict] | None:
        if self.rows is None:
            return None
        return by_variant(self.rows).get(self.variant, [])


@dataclass
class Comparison:
    """One headline metric, base against new, with the outcome a reviewer reads."""

    model: str
    metric: str
    direction: str
    new: dict  # value, low, high, n
    base: float | None
    change: Change | None
    outcome: str  # better | worse | within noise | same | count | new | untested

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Finding:
    metric: str
    level: str  # warn | fail
    message: str


@dataclass
class Verdict:
    status: str = "pass"
    findings: list[Finding] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)

    def add(self, metric: str, level: str, message: str) -> None:
        self.findings.append(Finding(metric, level, message))
        if ORDER[level] > ORDER[self.status]:
            self.status = level

    def to_dict(self) -> dict:
        return {"status": self.status, "findings": [asdict(f) for f in self.findings],
                "comparisons": [c.to_dict() for c in self.comparisons]}


def _outcome(change: Change, sign: int) -> str:
    if change.diff is None:
        return "new"
    # In "better" units (sign * change) the interval runs from the worse end to the better end.
    worse_end, better_end = sorted((change.low * sign, change.high * sign))
    if better_end < 0:
        return "worse"
    if worse_end > 0:
        return "better"
    return "same" if change.diff == 0 else "within noise"


def compare_model(new: ModelEvidence, base: ModelEvidence | None, base_values: dict[str, float],
                  seed: int = 0) -> list[Comparison]:
    """Every headline metric of `new` against `base` (paired over shared ids when both have per-example rows)."""
    specs = new.specs
    comparisons = []
    new_rows = new.headline_rows()
    base_rows = base.headline_rows() if base is not None else None
    for metric, estimate in sorted(new.headline().items()):
        if metric not in specs:
            raise EvidenceError(f"{new.name}.{metric} has no declared direction: declare a MetricSpec for it")
        spec = specs[metric]
        sign = SIGN[spec.direction]
        old = base_values.get(metric)
        if not sign:
            comparisons.append(Comparison(new.name, metric, spec.direction, estimate, old, None, "count"))
            continue
        if base_rows and new_rows is not None:
            change = paired_change(spec, base_rows, new_rows, seed)
            outcome = _outcome(change, sign)
        else:
            change = None
            outcome = "new" if old is None else "untested"
        comparisons.append(Comparison(new.name, metric, spec.direction, estimate, old, change, outcome))
    return comparisons


def judge(new: dict[str, ModelEvidence], base: dict[str, ModelEvidence], base_values: dict[str, dict[str, float]],
          cfg: GateConfig, drift: list[str] = (), data_rises: dict[str, dict[str, int]] | None = None,
          has_base: bool = True) -> Verdict:
    """The verdict of `new` against `base` (per-example evidence) and `base_values` (the base's headline figures,
    also from revisions that predate per-example results). `has_base` False: no base revision to compare with."""
    verdict = Verdict()
    names = {f"{m}.{k}" for m, ev in new.items() for k in ev.headline()}
    for pattern, floor in cfg.floors.items():
        if not any(fnmatchcase(n, pattern) for n in names):
            verdict.add(pattern, "warn", f"no metric matches `{pattern}`: its floor {floor:g} was not checked")
    for model, evidence in sorted(new.items()):
        old = base.get(model)
        comparisons = compare_model(evidence, old, base_values.get(model, {}) if has_base else {})
        verdict.comparisons += comparisons
        if has_base and base_values.get(model) and (old is None or old.rows is None):
            verdict.add(model, "warn", f"{model}: the base revision has no per-example results, so its changes "
                        "are shown but cannot be tested against noise")
        for c in comparisons:
            _judge_one(verdict, c, cfg)
    if has_base:
        for model, values in sorted(base_values.items()):
            gone = sorted(set(values) - {c.metric for c in verdict.comparisons if c.model == model})
            if model not in new:
                verdict.add(model, "warn", f"{model} was evaluated at the base revision but not now")
            elif gone:
                verdict.add(model, "warn", f"{model}: {', '.join(gone)} measured at the base revision but not now")
    for dataset, rises in sorted((data_rises or {}).items()):
        for kind, rise in sorted(rises.items()):
            limit = cfg.data_warn.get(kind)
            if limit is not None and rise > limit:
                verdict.add(f"data.{dataset}.{kind}", "warn",
                            f"{dataset}: {rise} more {kind} records than at the base (warns past {limit})")
    for message in drift:
        verdict.add("data", "warn", f"drift: {message}")
    return verdict


def _judge_one(verdict: Verdict, c: Comparison, cfg: GateConfig) -> None:
    name, sign = f"{c.model}.{c.metric}", SIGN[c.direction]
    if not sign:
        return
    value = c.new["value"]
    floor = _first(cfg.floors, name)
    if floor is not None and (value - floor) * sign < 0:
        word = "under its floor" if sign > 0 else "over its ceiling"
        verdict.add(name, "fail", f"{name} = {value:.4g} is {word} {floor:g}")
    if c.outcome != "worse" or c.change is None or c.change.diff is None:
        return
    drop = -c.change.diff * sign
    interval = f"paired 95% interval {c.change.low:+.3f} to {c.change.high:+.3f} over {c.change.n_shared} ids"
    limit, warn_at = _first(cfg.max_drop, name), _first(cfg.warn_drop, name)
    if limit is not None and drop > limit + 1e-12:
        verdict.add(name, "fail", f"{name} worse by {drop:.3f} ({c.change.diff:+.3f}; {interval}), "
                    f"beyond the allowed {limit:g}")
    elif warn_at is not None and drop > warn_at + 1e-12:
        verdict.add(name, "warn", f"{name} worse by {drop:.3f} ({interval}), warns past {warn_at:g}")


def detectable_change(estimate: dict) -> float:
    """The smallest change this test set can tell from noise, read off the metric's own 95% interval."""
    low, high = estimate.get("low"), estimate.get("high")
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return math.nan
    return (high - low) / 2
