"""Per-example evidence: every headline metric recomputed from per-example rows, with seeded 95% intervals.

An evaluation writes one row per (example, variant) to `reports/<model>/examples.jsonl`, keyed by the record's
stable `id`, and declares each metric once as a `MetricSpec` beside the code that produces it. Every declared
metric is a ratio of per-example sums (a mean is `sum(x) / count`, micro-F1 is `2 tp / (2 tp + fp + fn)`), so one
resampling of the examples serves them all: `scipy.stats.bootstrap` over example indices, percentile method.

A change between two revisions is judged on the ids both evaluated (old records keep their split, so last
month's test ids are inside this month's): the paired interval of `new - base` over those ids; the ids only the
new revision has are scored beside it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np
from scipy import stats

from reprolab.data.atomic import write_json
from reprolab.data.jsonl import parse_jsonl, write_jsonl
from reprolab.errors import DatasetError

Direction = Literal["higher", "lower", "count"]
Kind = Literal["mean", "ratio", "f1", "count"]
DIRECTIONS = ("higher", "lower", "count")
FIELDS_PER_KIND = {"mean": 1, "ratio": 2, "f1": 3, "count": 1}
RESAMPLES = 2000
LEVEL = 0.95
EXAMPLES = "examples.jsonl"
EVALUATION = "evaluation.json"
METRICS = "metrics.json"
VARIANTS = "variants"  # metrics.json: every variant with its intervals, beside the headline figures


class EvidenceError(DatasetError):
    """Per-example results that cannot back a metric: a missing field, an undeclared metric, a bad file."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric, declared where it is produced: how to compute it from per-example fields, and which way is better.

    kind "mean": fields (x,), mean of x; "ratio": (num, den), sum(num) / sum(den); "f1": (tp, fp, fn), micro-F1;
    "count": (x,), sum of x (a size, such as the number of test images: direction "count").
    `where` names a boolean field: only examples where it is true count (false refusals among answerable questions).
    direction "count" marks a size or count: shown, never gated.
    """

    name: str
    direction: Direction
    kind: Kind
    fields: tuple[str, ...]
    where: str | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise EvidenceError(f"metric {self.name}: direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.kind not in FIELDS_PER_KIND:
            raise EvidenceError(f"metric {self.name}: kind must be one of {sorted(FIELDS_PER_KIND)}, got {self.kind!r}")
        if len(self.fields) != FIELDS_PER_KIND[self.kind]:
            raise EvidenceError(f"metric {self.name}: kind {self.kind} takes {FIELDS_PER_KIND[self.kind]} fields, "
                                f"got {list(self.fields)}")
        object.__setattr__(self, "fields", tuple(self.fields))

    def terms(self, rows: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
        """Per-example numerator and denominator whose sums give the metric (den 0: the example does not count)."""
        def column(name: str) -> np.ndarray:
            try:
                return np.array([_number(row[name], name, row) for row in rows], dtype=np.float64)
            except KeyError as e:
                raise EvidenceError(f"metric {self.name} needs the per-example field {name!r}, missing in a row "
                                    f"(id {next((r.get('id') for r in rows if name not in r), '?')})") from e

        weight = column(self.where) if self.where else np.ones(len(rows))
        if self.kind in ("mean", "count"):
            num, den = column(self.fields[0]), np.ones(len(rows))
        elif self.kind == "ratio":
            num, den = column(self.fields[0]), column(self.fields[1])
        else:
            tp, fp, fn = (column(f) for f in self.fields)
            num, den = 2 * tp, 2 * tp + fp + fn
        return num * weight, den * weight

    def statistic(self, num: np.ndarray, den: np.ndarray) -> np.ndarray | float:
        """The metric from per-example terms (the last axis runs over examples)."""
        return num.sum(axis=-1) if self.kind == "count" else _ratio(num, den)

    def to_dict(self) -> dict:
        return asdict(self) | {"fields": list(self.fields)}

    @classmethod
    def from_dict(cls, data: dict) -> "MetricSpec":
        try:
            return cls(data["name"], data["direction"], data["kind"], tuple(data["fields"]), data.get("where"))
        except (KeyError, TypeError) as e:
            raise EvidenceError(f"a declared metric needs name, direction, kind and fields: got {data}") from e


def _number(value, name: str, row: dict) -> float:
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return float(value)
    if value is None:
        return math.nan
    raise EvidenceError(f"per-example field {name!r} of id {row.get('id')!r} must be a number or boolean, "
                        f"got {value!r}")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray | float:
    total = den.sum(axis=-1)
    return np.divide(num.sum(axis=-1), total, out=np.zeros_like(total, dtype=np.float64), where=total > 0)


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int  # examples that count towards the metric

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _bootstrap(statistic, n: int, seed: int) -> tuple[float, float]:
    """Percentile interval of `statistic(indices)` over `n` examples resampled with replacement (seeded)."""
    if n < 2:
        return math.nan, math.nan
    res = stats.bootstrap((np.arange(n),), lambda idx, axis=-1: statistic(idx.astype(np.int64)),
                          vectorized=True, n_resamples=RESAMPLES, confidence_level=LEVEL, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def estimate(spec: MetricSpec, rows: Sequence[dict], seed: int = 0) -> Estimate:
    """The metric over `rows` with its seeded 95% bootstrap interval."""
    num, den = spec.terms(rows)
    num, den = np.nan_to_num(num), np.nan_to_num(den)
    value = float(spec.statistic(num, den))
    low, high = _bootstrap(lambda idx: spec.statistic(num[idx], den[idx]), len(rows), seed)
    return Estimate(value, low if not math.isnan(low) else value, high if not math.isnan(high) else value,
                    int((den > 0).sum()))


@dataclass(frozen=True)
class Change:
    """new - base for one metric: on the ids both revisions evaluated (paired), plus the new ids alone."""

    base: float | None  # the base revision's figure on all its examples
    new: float  # the new revision's figure on all its examples
    diff: float | None  # new - base on the shared ids
    low: float | None
    high: float | None
    n_shared: int
    new_only: float | None  # the new revision's figure on the ids the base never evaluated
    n_new_only: int

    def to_dict(self) -> dict:
        return asdict(self)


def paired_change(spec: MetricSpec, base_rows: Sequence[dict], new_rows: Sequence[dict], seed: int = 0) -> Change:
    """The paired 95% interval of `new - base` over the ids both evaluated (resampling ids, not rows)."""
    base_by_id = {row["id"]: row for row in base_rows}
    shared = [row for row in new_rows if row["id"] in base_by_id]
    fresh = [row for row in new_rows if row["id"] not in base_by_id]
    new_all = estimate(spec, new_rows, seed).value if new_rows else math.nan
    base_all = float(spec.statistic(*map(np.nan_to_num, spec.terms(base_rows)))) if base_rows else None
    new_only = float(spec.statistic(*map(np.nan_to_num, spec.terms(fresh)))) if fresh else None
    if not shared:
        return Change(base_all, new_all, None, None, None, 0, new_only, len(fresh))
    n_new, d_new = map(np.nan_to_num, spec.terms(shared))
    n_old, d_old = map(np.nan_to_num, spec.terms([base_by_id[row["id"]] for row in shared]))
    statistic = lambda idx: spec.statistic(n_new[idx], d_new[idx]) - spec.statistic(n_old[idx], d_old[idx])  # noqa: E731
    diff = float(statistic(np.arange(len(shared))))
    low, high = _bootstrap(statistic, len(shared), seed)
    if math.isnan(low):
        low = high = diff
    return Change(base_all, new_all, diff, low, high, len(shared), new_only, len(fresh))


def by_variant(rows: Iterable[dict]) -> dict[str, list[dict]]:
    """Rows grouped by their `variant`, each group sorted by id (so resampling does not depend on file order)."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if "id" not in row or "variant" not in row:
            raise EvidenceError(f"every per-example row needs an `id` and a `variant`: got keys {sorted(row)}")
        groups.setdefault(str(row["variant"]), []).append(row)
    for variant, group in groups.items():
        ids = [str(r["id"]) for r in group]
        if len(set(ids)) != len(ids):
            raise EvidenceError(f"variant {variant}: an id appears twice ({_first_duplicate(ids)})")
        group.sort(key=lambda r: str(r["id"]))
    return groups


def _first_duplicate(ids: list[str]) -> str:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    return "?"


def evaluate_variants(specs: Sequence[MetricSpec], rows: Iterable[dict], seed: int = 0) -> dict[str, dict]:
    """{variant: {metric: {"value", "low", "high", "n"}}} for every variant in `rows`."""
    return {variant: {spec.name: estimate(spec, group, seed).to_dict() for spec in specs}
            for variant, group in sorted(by_variant(rows).items())}


def write_examples(path: Path, rows: Iterable[dict]) -> None:
    """One JSON object per line, sorted by (variant, id): stable bytes for a stable evaluation."""
    write_jsonl(path, sorted(rows, key=lambda r: (str(r["variant"]), str(r["id"]))))


def parse_examples(text: str, where: str = "examples") -> list[dict]:
    """The rows of an examples.jsonl text (`where` names it in errors: a path, or a revision's file)."""
    try:
        return parse_jsonl(text, where)
    except DatasetError as e:
        raise EvidenceError(str(e)) from e


def read_examples(path: Path) -> list[dict]:
    try:
        return parse_examples(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError as e:
        raise EvidenceError(f"{path} not found: re-run the stage that evaluates this model") from e


def write_evaluation(model_dir: Path, specs: Sequence[MetricSpec], rows: Sequence[dict], headline_variant: str,
                     extra: dict | None = None, seed: int = 0) -> dict:
    """Write examples.jsonl, evaluation.json (every variant with intervals, the declared specs) and metrics.json
    (`headline_metrics`: the headline variant's values, and every variant with its intervals). Returns the
    evaluation."""
    groups = by_variant(rows)
    if headline_variant not in groups:
        raise EvidenceError(f"{model_dir}: the headline variant {headline_variant!r} has no per-example rows "
                            f"(variants: {sorted(groups)})")
    evaluation = {
        "headline_variant": headline_variant,
        "specs": [s.to_dict() for s in specs],
        "variants": evaluate_variants(specs, rows, seed),
        "interval": {"method": "bootstrap percentile over examples", "level": LEVEL, "resamples": RESAMPLES,
                     "seed": seed},
        **({"extra": extra} if extra else {}),
    }
    write_examples(model_dir / EXAMPLES, rows)
    write_json(model_dir / EVALUATION, evaluation)
    write_json(model_dir / METRICS, headline_metrics(evaluation))
    return evaluation


def headline_metrics(evaluation: dict) -> dict:
    """metrics.json: the headline variant's {metric: value} at the top (what the gate reads and `dvc metrics diff`
    compares first), and under "variants" every variant of the evaluation (each baseline, half or language) with
    its value, 95% interval and n, rounded for a readable `dvc metrics show`."""
    row = evaluation["variants"][evaluation["headline_variant"]]
    flat = {name: round(est["value"], 4) for name, est in row.items()}
    return {**flat, VARIANTS: rounded_variants(evaluation)}


def rounded_variants(evaluation: dict) -> dict:
    return {variant: {name: {k: round(v, 4) if isinstance(v, float) else v for k, v in est.items()}
                      for name, est in metrics.items()}
            for variant, metrics in evaluation["variants"].items()}


def headline_only(metrics: dict) -> dict:
    """A metrics.json's headline figures, without its "variants" block."""
    return {k: v for k, v in metrics.items() if k != VARIANTS}


def declared(evaluation: dict) -> dict[str, MetricSpec]:
    """The specs an evaluation.json declares, by metric name."""
    specs = [MetricSpec.from_dict(d) for d in evaluation.get("specs", [])]
    return {s.name: s for s in specs}


def check_declared(metrics: dict, evaluation: dict, where: str) -> None:
    """Every metric in a metrics.json needs a declared spec (its direction): refuse one without."""
    names = declared(evaluation)
    missing = sorted(k for k in headline_only(metrics) if k not in names)
    if missing:
        raise EvidenceError(f"{where}: metric(s) {missing} have no declared direction: declare a MetricSpec for "
                            "each where it is produced")
