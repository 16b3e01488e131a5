"""Every model's evaluation, read back from the files its stage wrote and checked against its per-example rows.

A model stage writes `reports/<model>/metrics.json` (the headline figures `dvc metrics show` prints),
`evaluation.json` (every variant with its 95% interval, the declared metric specs) and `examples.jsonl` (the
per-example outcomes). A model whose stage has not run simply has no files: `evaluate` reports it as missing.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from pydantic import Field

from reprolab.config import StrictConfig
from reprolab.errors import DatasetError
from reprolab.evaluation.drift import DriftConfig
from reprolab.evaluation.evidence import (EVALUATION, EXAMPLES, VARIANTS, EvidenceError, by_variant,
                                          check_declared, estimate, headline_only, read_examples,
                                          rounded_variants)
from reprolab.evaluation.gate import GateConfig, ModelEvidence

log = logging.getLogger(__name__)


class ModelSpec(StrictConfig):
    metrics: str  # the headline metrics file its stage writes; evaluation.json and examples.jsonl lie beside it
    title: str = ""
    params: list[str] = Field(default_factory=list)  # params.yaml sections shown on the model card
    baseline: str = "baseline"  # the variant every other one is compared with on the card
    training_logs: list[str] = Field(default_factory=list)  # CSV/TSV/JSON(L) per-step logs to plot

    @property
    def folder(self) -> Path:
        return Path(self.metrics).parent


class EvaluateConfig(StrictConfig):
    data_quality: str = "reports/data_quality.json"
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    gate: GateConfig = GateConfig()
    drift: DriftConfig = DriftConfig()


def flatten(tree: dict, prefix: str = "") -> dict[str, float]:
    """Nested metrics -> {"a.b.c": number}; non-numeric leaves (lists, strings) are left out."""
    flat: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        elif isinstance(value, bool):
            flat[name] = int(value)
        elif isinstance(value, (int, float)):
            flat[name] = value
    return flat


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON ({e}): re-run the stage that writes it") from e
    if not isinstance(data, dict):
        raise DatasetError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def check_recomputed(evidence: ModelEvidence, metrics: dict, where: str) -> None:
    """The headline figures must be what the per-example rows give: recompute each one and compare."""
    check_declared(metrics, evidence.evaluation, where)
    rows = by_variant(evidence.rows or []).get(evidence.variant)
    if not rows:
        raise EvidenceError(f"{where}: no per-example rows for the headline variant {evidence.variant!r}")
    if metrics.get(VARIANTS) != rounded_variants(evidence.evaluation):
        raise EvidenceError(f"{where}: its \"{VARIANTS}\" block differs from {EVALUATION} beside it: re-run the "
                            "stage that wrote them")
    specs = evidence.specs
    for name, value in headline_only(metrics).items():
        again = estimate(specs[name], rows).value
        if not math.isclose(again, float(value), abs_tol=5e-4):
            raise EvidenceError(f"{where}: {name} = {value} but its per-example rows give {again:.4f}: "
                                "re-run the stage that wrote them")


def load_evidence(cfg: EvaluateConfig, root: Path = Path(".")) -> dict[str, ModelEvidence]:
    """{model: its evaluation and per-example rows} for every configured model whose stage has run."""
    found = {}
    for name, spec in cfg.models.items():
        folder = root / spec.folder
        metrics_path, evaluation_path = root / spec.metrics, folder / EVALUATION
        if not metrics_path.is_file():
            log.warning("no metrics for model: its stage has not run", extra={"model": name, "path": str(metrics_path)})
            continue
        if not evaluation_path.is_file():
            raise EvidenceError(f"{evaluation_path} not found beside {metrics_path}: the stage must write its "
                                "evaluation with reprolab.evaluation.evidence.write_evaluation")
        evidence = ModelEvidence(name, read_json(evaluation_path), read_examples(folder / EXAMPLES))
        check_recomputed(evidence, read_json(metrics_path), str(metrics_path))
        found[name] = evidence
    return found
