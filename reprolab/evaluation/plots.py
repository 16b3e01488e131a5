"""Render the evaluation plots to PNG: variants with intervals, metric@k curves, per-intent F1, training curves,\nand the report's base-against-new bars.

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


log = logging.getLogger(__name__)

AT_K = re.compile(r"^(?P<name>.+)@(?P<k>\d+)$")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def _panels(evaluation: dict) -> list[tuple[str, list[str]]]:
    """Metric names grouped by direction, one panel each: a rate where lower is better never shares an axis
    with one where higher is better; counts are not plotted."""
    specs = {s["name"]: s for s in evaluation.get("specs", [])}
    groups = [("higher is better", [n for n, s in specs.items() if s["direction"] == "higher"]),
              ("lower is better", [n for n, s in specs.items() if s["direction"] == "lower"])]
    return [(title, sorted(names)) for title, names in groups if names]


def variants_bar(model: str, evaluation: dict, path: Path) -> Path | None:
    """Each variant's declared metrics with their 95% intervals, higher- and lower-is-better on separate panels.

    Only declared metrics of evaluated variants are drawn (never settings such as the test-set size), and every
    bar carries its value, so a variant that scores zero is visible as a labelled 0."""
    variants = evaluation.get("variants", {})
    panels = _panels(evaluation)
    if not variants or not panels:
        return None
    widths = [len(names) for _, names in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6, 1.1 * sum(widths) * max(1, len(variants)) / 2 + 3), 4.5),
                             squeeze=False, gridspec_kw={"width_ratios": widths})
    width = 0.8 / len(variants)
    for ax, (title, names) in zip(axes[0], panels):
        for i, (variant, metrics) in enumerate(sorted(variants.items())):
            xs = [j + i * width for j in range(len(names))]
            est = [metrics.get(n, {}) for n in names]
            values = [e.get("value", 0.0) for e in est]
            errs = [[max(0.0, v - e.get("low", v)) for v, e in zip(values, est)],
                    [max(0.0, e.get("high", v) - v) for v, e in zip(values, est)]]
            bars = ax.bar(xs, values, width, yerr=errs, capsize=2, label=variant)
            ax.bar_label(bars, [f"{v:.2f}" for v in values], fontsize=6, padding=1)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, rotation=30, ha="right", fontsize=8)
        if all(0 <= e.get("high", 0) <= 1 for m in variants.values() for e in (m.get(n, {}) for n in names)):
            ax.set_ylim(0, 1.1)  # rates share one scale; anything else (a mean rank) keeps its own
        ax.set_ylabel("value (bars: 95% bootstrap interval)")
        ax.set_title(title, fontsize=9)
    axes[0][0].legend(fontsize=7, title="variant", title_fontsize=7)
    fig.suptitle(f"{model}: variants on the test split")
    return _save(fig, path)


def at_k_curves(model: str, evaluation: dict, path: Path) -> Path | None:
    """recall@k / hit@k against k, one line per variant and metric family."""
    series: dict[str, dict[int, float]] = {}
    for variant, metrics in evaluation.get("variants", {}).items():
        for name, est in metrics.items():
            m = AT_K.match(name)
            if m:
                series.setdefault(f"{variant} {m['name']}", {})[int(m["k"])] = est["value"]
    series = {name: points for name, points in series.items() if len(points) >= 2}  # a curve, not a dot
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in sorted(series.items()):
        ks = sorted(points)
        ax.plot(ks, [points[k] for k in ks], marker="o", label=name)
    ax.set_xlabel("k")
    ax.set_ylabel("share of test queries with a match in the top k")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{model}: metric@k")
    ax.legend(fontsize=7)
    return _save(fig, path)


def base_vs_new(model: str, comparisons: list, path: Path, base_label: str) -> Path | None:
    """The headline metrics at the base revision and now, the new ones with their 95% intervals."""
    rows = [c for c in comparisons if c.direction != "count"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(rows) + 1.5))
    ys = list(range(len(rows)))
    base = [c.base if c.base is not None else float("nan") for c in rows]
    new = [c.new["value"] for c in rows]
    err = [[max(0.0, c.new["value"] - c.new["low"]) for c in rows], [max(0.0, c.new["high"] - c.new["value"])
                                                                      for c in rows]]
    ax.barh([y + 0.2 for y in ys], base, 0.4, label=f"base {base_label}", color="#bbbbbb")
    ax.barh([y - 0.2 for y in ys], new, 0.4, xerr=err, capsize=2, label="new (95% interval)", color="#1f77b4")
    labels = [f"{c.metric} ({'lower' if c.direction == 'lower' else 'higher'} is better)" for c in rows]
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    if all(0 <= c.new["high"] <= 1 and (c.base is None or 0 <= c.base <= 1) for c in rows):
        ax.set_xlim(0, 1.05)
    ax.set_xlabel("value")
    ax.set_title(f"{model}: base against new")
    ax.legend(fontsize=7, loc="lower right")
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


LOSS = re.compile(r"loss", re.I)
SCORE = re.compile(r"recall|score|f1|hit|accuracy|mrr", re.I)


def training_curves(model: str, logs: list[Path], path: Path) -> Path | None:
    """Loss on one panel, validation scores in [0, 1] on another, against step, from every log file given
    (one table with many columns, or DVCLive's one TSV per value).

    Other columns (epoch, learning rate, logit scale, token counts) are not metrics and are not drawn."""
    series: dict[str, dict[str, list[tuple[float, float]]]] = {"training loss": {}, "validation score": {}}
    x_label = "row"
    for log_path in logs:
        rows = read_log(log_path) if log_path.is_file() else []
        if not rows:
            continue
        x_key = next((k for k in ("step", "epoch", "iteration") if k in rows[0]), None)
        x_label = x_key or x_label
        prefix = log_path.parent.name + "/" if log_path.suffix == ".tsv" else ""  # DVCLive: train/loss, val/score
        for col in rows[0]:
            if col == x_key:
                continue
            kind = "training loss" if LOSS.search(col) else "validation score" if SCORE.search(col) else None
            if kind is None:
                continue
            xs = [_number(r.get(x_key)) if x_key else i for i, r in enumerate(rows)]
            pts = [(x, y) for x, y in zip(xs, (_number(r.get(col)) for r in rows)) if x is not None and y is not None]
            if pts:
                series[kind][prefix + col] = pts
    panels = [(label, lines) for label, lines in series.items() if lines]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (label, lines) in zip(axes[0], panels):
        for name, pts in sorted(lines.items()):
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 30 else None, label=name)
        ax.set_xlabel(x_label)
        ax.set_ylabel(label)
        if label == "validation score":
            ax.set_ylim(0, 1.02)
        ax.set_title(f"{model}: {label}", fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


def render_all(evaluations: dict[str, dict], logs: dict[str, list[Path]], out_dir: Path) -> list[Path]:
    """All plots for all models (`evaluations`: each model's evaluation.json); returns the files written."""
    written = []
    for model, evaluation in sorted(evaluations.items()):
        for kind, fn in (("variants", variants_bar), ("at_k", at_k_curves)):
            p = fn(model, evaluation, out_dir / f"{model}_{kind}.png")
            if p:
                written.append(p)
        p = per_intent_f1(model, evaluation.get("extra", {}), out_dir / f"{model}_per_intent_f1.png")
        if p:
            written.append(p)
        p = training_curves(model, logs.get(model, []), out_dir / f"{model}_training.png")
        if p:
            written.append(p)
    log.info("plots rendered", extra={"files": [str(p) for p in written]})
    return sorted(written)
