"""The regression gate: per-metric floors and largest allowed drops against the base revision.

Verdict `fail` when a metric is under its floor or dropped more than `max_drop`; `warn` when it dropped more
than `warn_drop`, when a gated metric is missing, or when the data drifted; `pass` otherwise. Thresholds are
glob patterns over the flat metric names (`clip.finetuned.*recall@5`); the first pattern that matches wins.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase

from pydantic import Field

from reprolab.config import StrictConfig

ORDER = {"pass": 0, "warn": 1, "fail": 2}


class GateConfig(StrictConfig):
    floors: dict[str, float] = Field(default_factory=dict)  # pattern -> absolute minimum (or maximum)
    max_drop: dict[str, float] = Field(default_factory=dict)  # pattern -> worst change vs base that still passes
    warn_drop: dict[str, float] = Field(default_factory=dict)  # pattern -> change vs base that warns
    # Metrics where smaller is better: their "drop" is a rise, their floor a ceiling.
    lower_is_better: list[str] = Field(
        default_factory=lambda: ["*median_rank", "*prompt_tokens", "data.*.quarantined", "data.*.duplicates"]
    )
    # Counts and sizes that are neither better nor worse when they move (shown without direction).
    neutral: list[str] = Field(default_factory=lambda: ["data.*.read", "data.*.accepted", "*chance_recall*"])


def _first(patterns: dict[str, float], metric: str) -> float | None:
    for pattern, value in patterns.items():
        if fnmatchcase(metric, pattern):
            return value
    return None


def direction(metric: str, cfg: GateConfig) -> int:
    """+1 when higher is better, -1 when lower is better, 0 for neutral counts."""
    if any(fnmatchcase(metric, p) for p in cfg.neutral):
        return 0
    return -1 if any(fnmatchcase(metric, p) for p in cfg.lower_is_better) else 1


@dataclass
class Finding:
    metric: str
    level: str  # warn | fail
    message: str


@dataclass
class Verdict:
    status: str = "pass"
    findings: list[Finding] = field(default_factory=list)

    def add(self, metric: str, level: str, message: str) -> None:
        self.findings.append(Finding(metric, level, message))
        if ORDER[level] > ORDER[self.status]:
            self.status = level

    def to_dict(self) -> dict:
        return {"status": self.status, "findings": [asdict(f) for f in self.findings]}


def judge(
    new: dict[str, float], base: dict[str, float] | None, cfg: GateConfig, drift: list[str] = ()
) -> Verdict:
    """Compare the new flat metrics with floors and with `base` (None: no base revision to compare with)."""
    verdict = Verdict()
    for pattern, floor in cfg.floors.items():
        if not any(fnmatchcase(m, pattern) for m in new):
            verdict.add(pattern, "warn", f"no metric matches `{pattern}`: its floor {floor:g} was not checked")
    for metric in sorted(new):
        value, sign = new[metric], direction(metric, cfg)
        floor = _first(cfg.floors, metric)
        if floor is not None and sign and (value - floor) * sign < 0:
            word = "under its floor" if sign > 0 else "over its ceiling"
            verdict.add(metric, "fail", f"{metric} = {value:g} is {word} {floor:g}")
        if base is None or metric not in base or not sign:
            continue
        drop = (base[metric] - value) * sign  # positive = got worse
        limit, warn_at = _first(cfg.max_drop, metric), _first(cfg.warn_drop, metric)
        if limit is not None and drop > limit + 1e-12:
            verdict.add(metric, "fail", f"{metric} fell {base[metric]:g} -> {value:g} (worse by {drop:.4g}, "
                        f"allowed {limit:g})")
        elif warn_at is not None and drop > warn_at + 1e-12:
            verdict.add(metric, "warn", f"{metric} fell {base[metric]:g} -> {value:g} (worse by {drop:.4g}, "
                        f"warns past {warn_at:g})")
    if base is not None:
        for metric in sorted(set(base) - set(new)):
            if _first(cfg.max_drop, metric) is not None or _first(cfg.floors, metric) is not None:
                verdict.add(metric, "warn", f"{metric} was measured at the base revision but not now")
    for message in drift:
        verdict.add("data", "warn", f"drift: {message}")
    return verdict
