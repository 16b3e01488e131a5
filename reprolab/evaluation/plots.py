"""Render the evaluation plots to PNG: variants side by side, metric@k curves, per-intent F1, training curves.

Each function takes already-loaded metrics and writes one file; a plot whose data is absent is skipped,
never faked. PNGs carry no timestamp or version metadata, so unchanged inputs give identical bytes.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from reprolab.evaluation.summary import flatten  # noqa: E402

log = logging.getLogger(__name__)

AT_K = re.compile(r"^(?P<name>.+)@(?P<k>\d+)$")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def variants_bar(model: str, metrics: dict, path: Path) -> Path | None:
    """Grouped bars of every rate (a metric in [0, 1]) for each variant (baseline, fine-tuned, ...)."""
    variants = {v: flatten(m) for v, m in metrics.items() if isinstance(m, dict)}
    names = sorted({k for flat in variants.values() for k, x in flat.items()
                    if 0 <= x <= 1 and "per_intent" not in k})  # per-intent scores get their own plot
    if not variants or not names:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names) * len(variants) / 2 + 3), 4))
    width = 0.8 / len(variants)
    for i, (variant, flat) in enumerate(variants.items()):
        xs = [j + i * width for j in range(len(names))]
        ax.bar(xs, [flat.get(n, 0.0) for n in names], width, label=variant)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(f"{model}: variants side by side")
    ax.legend(fontsize=8)
    return _save(fig, path)


def at_k_curves(model: str, metrics: dict, path: Path) -> Path | None:
    """recall@k / hit@k against k, one line per variant and metric family."""
    series: dict[str, dict[int, float]] = {}
    for name, value in flatten(metrics).items():
        m = AT_K.match(name)
        if m:
            series.setdefault(m["name"], {})[int(m["k"])] = value
    series = {name: points for name, points in series.items() if len(points) >= 2}  # a curve, not a dot
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in sorted(series.items()):
        ks = sorted(points)
        ax.plot(ks, [points[k] for k in ks], marker="o", label=name)
    ax.set_xlabel("k")
    ax.set_ylabel("value")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{model}: metric@k")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _per_intent(metrics: dict, prefix: str = "") -> dict[str, dict[str, float]]:
    """Find {variant: {intent: f1}} in nested metrics: any dict under a key containing 'per_intent'."""
    found: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if not isinstance(value, dict):
            continue
        if "per_intent" in key:
            scores = {i: (v.get("f1") if isinstance(v, dict) else v) for i, v in value.items()}
            found[prefix or key] = {i: float(s) for i, s in scores.items() if isinstance(s, (int, float))}
        else:
            found.update(_per_intent(value, f"{prefix}.{key}" if prefix else key))
    return found


def per_intent_f1(model: str, metrics: dict, path: Path) -> Path | None:
    per_variant = {v: s for v, s in _per_intent(metrics).items() if s}
    if not per_variant:
        return None
    intents = sorted({i for s in per_variant.values() for i in s})
    fig, ax = plt.subplots(figsize=(7, max(3, 0.22 * len(intents) * len(per_variant) / 2 + 1)))
    height = 0.8 / len(per_variant)
    for i, (variant, scores) in enumerate(sorted(per_variant.items())):
        ax.barh([j + i * height for j in range(len(intents))], [scores.get(n, 0.0) for n in intents],
                height, label=variant)
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(intents))], intents, fontsize=6)
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(f"{model}: F1 per intent")
    ax.legend(fontsize=7)
    return _save(fig, path)


def read_log(path: Path) -> list[dict]:
    """Rows of a per-step training log: CSV, TSV, a JSON list, or JSON lines."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".csv", ".tsv"):
        return list(csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix == ".tsv" else ","))
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if isinstance(data, dict):  # {"train": [...]} as dvc plots accept
        data = next((v for v in data.values() if isinstance(v, list)), [])
    return data if isinstance(data, list) else []


def _number(x) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def training_curves(model: str, logs: list[Path], path: Path) -> Path | None:
    """Every numeric column against step (or epoch, or row index), one panel per log file."""
    tables = [(p, read_log(p)) for p in logs if p.is_file()]
    tables = [(p, rows) for p, rows in tables if rows]
    if not tables:
        return None
    fig, axes = plt.subplots(1, len(tables), figsize=(6 * len(tables), 4), squeeze=False)
    for ax, (log_path, rows) in zip(axes[0], tables):
        x_key = next((k for k in ("step", "epoch", "iteration") if k in rows[0]), None)
        xs = [_number(r.get(x_key)) if x_key else i for i, r in enumerate(rows)]
        for col in rows[0]:
            if col == x_key:
                continue
            ys = [_number(r.get(col)) for r in rows]
            pts = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=col)
        ax.set_xlabel(x_key or "row")
        ax.set_title(f"{model}: {log_path.name}")
        ax.legend(fontsize=7)
    return _save(fig, path)


def render_all(models: dict[str, dict], logs: dict[str, list[Path]], out_dir: Path) -> list[Path]:
    """All plots for all models; returns the files written (sorted)."""
    written = []
    for model, metrics in sorted(models.items()):
        for kind, fn in (("variants", variants_bar), ("at_k", at_k_curves), ("per_intent_f1", per_intent_f1)):
            p = fn(model, metrics, out_dir / f"{model}_{kind}.png")
            if p:
                written.append(p)
        p = training_curves(model, logs.get(model, []), out_dir / f"{model}_training.png")
        if p:
            written.append(p)
    log.info("plots rendered", extra={"files": [str(p) for p in written]})
    return sorted(written)
