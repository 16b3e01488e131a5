"""Gather every model's metrics file into one flat summary that `dvc metrics diff` reads key by key.

A model stage that has not landed (or did not run) simply has no file: the summary holds what exists and
says which models are missing, so `evaluate` works from the first model stage on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import Field

from reprolab.config import StrictConfig
from reprolab.errors import DatasetError
from reprolab.evaluation.drift import DriftConfig
from reprolab.evaluation.gate import GateConfig

log = logging.getLogger(__name__)


class ModelSpec(StrictConfig):
    metrics: str  # the per-model metrics file its stage writes
    title: str = ""
    params: list[str] = Field(default_factory=list)  # params.yaml sections shown on the model card
    baseline: str = "baseline"  # the variant every other one is compared with on the card
    training_logs: list[str] = Field(default_factory=list)  # CSV/TSV/JSON(L) per-step logs to plot


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


def load_model_metrics(cfg: EvaluateConfig, root: Path = Path(".")) -> dict[str, dict]:
    """{model: its nested metrics} for every configured model whose metrics file exists."""
    found = {}
    for name, spec in cfg.models.items():
        path = root / spec.metrics
        if path.is_file():
            found[name] = read_json(path)
        else:
            log.warning("no metrics for model: its stage has not run", extra={"model": name, "path": str(path)})
    return found


def summarize(cfg: EvaluateConfig, root: Path = Path(".")) -> tuple[dict[str, float], dict[str, dict]]:
    """The flat summary (models + data-quality counts) and the nested per-model metrics it came from."""
    models = load_model_metrics(cfg, root)
    flat: dict[str, float] = {}
    for name, metrics in models.items():
        flat.update(flatten(metrics, name))
    dq_path = root / cfg.data_quality
    if dq_path.is_file():
        flat.update(flatten(read_json(dq_path).get("datasets", {}), "data"))
    return flat, models
