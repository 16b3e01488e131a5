"""The PR report a reviewer decides from: the verdict first, then per model its headline metrics (base, new,
change, paired 95% interval, better / worse / within noise), what changed in the data, base-against-new plots,
and every metric of every variant last, folded.

The new revision is read from the workspace; the base revision's evaluation and per-example rows from git,
where they are committed (no DVC remote needed). Changes are paired over the test ids both revisions evaluated.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from reprolab.errors import ReprolabError
from reprolab.evaluation.drift import drift_warnings
from reprolab.evaluation.evidence import EVALUATION, EXAMPLES, EvidenceError, parse_examples
from reprolab.evaluation.gate import Comparison, ModelEvidence, Verdict, detectable_change, judge
from reprolab.evaluation.plots import base_vs_new
from reprolab.evaluation.summary import EvaluateConfig, load_evidence

CORPUS_STATS = "reports/corpus_stats.json"
PLOTS = "reports/plots"
CARDS = "reports/cards"
PR_PLOTS = "reports/pr"  # written by the report beside reports/pr_report.md, not a DVC output
ICON = {"pass": "✅ PASS", "warn": "⚠️ WARN", "fail": "❌ FAIL"}
MARK = {"better": "▲ better", "worse": "▼ worse", "within noise": "≈ within noise", "same": "= same",
        "count": "· count", "new": "new", "untested": "? untested"}
ARROW = {"higher": "↑ higher", "lower": "↓ lower", "count": "· count"}


class ReportError(ReprolabError):
    """The report cannot be built: unknown base revision, or dvc/git failed."""


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name  # the venv's dvc, even when the venv is not on PATH
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def _run(args: list[str], root: Path) -> str:
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReportError(f"`{' '.join(args[:3])} ...` failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def resolve_base(root: Path, base: str | None) -> str:
    """The given revision, else the merge base with origin/main, else HEAD~1 (when on main itself)."""
    if base:
        return _run(["git", "rev-parse", "--verify", f"{base}^{{commit}}"], root).strip()
    head = _run(["git", "rev-parse", "HEAD"], root).strip()
    for candidate in ("origin/main", "main"):
        proc = subprocess.run(["git", "merge-base", "HEAD", candidate], cwd=root, capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip() and proc.stdout.strip() != head:
            return proc.stdout.strip()
    return _run(["git", "rev-parse", "--verify", "HEAD~1^{commit}"], root).strip()


def git_text(root: Path, rev: str, path: str) -> str | None:
    """A committed file at `rev`, or None when that revision does not have it."""
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def git_json(root: Path, rev: str, path: str) -> dict | None:
    text = git_text(root, rev, path)
    return json.loads(text) if text is not None else None


def params_diff(root: Path, base: str) -> dict[str, dict]:
    """{param: {"old", "new"}} over every params file, changed params only."""
    out = json.loads(_run([_tool("dvc"), "params", "diff", base, "--json"], root) or "{}")
    return {f"{name}" if file == "params.yaml" else f"{file}:{name}": d
            for file, params in out.items() for name, d in params.items()}


def base_evidence(cfg: EvaluateConfig, root: Path, rev: str) -> tuple[dict[str, ModelEvidence], dict[str, dict]]:
    """The base revision's per-model evidence (models that recorded it) and headline figures (every model that
    has a metrics file there, older flat or nested layouts included)."""
    evidence, values = {}, {}
    for name, spec in cfg.models.items():
        folder = spec.folder.as_posix()
        evaluation = git_json(root, rev, f"{folder}/{EVALUATION}")
        if evaluation is not None and "headline_variant" in evaluation:
            text = git_text(root, rev, f"{folder}/{EXAMPLES}")
            rows = parse_examples(text, f"{rev[:8]}:{folder}/{EXAMPLES}") if text is not None else None
            evidence[name] = ModelEvidence(name, evaluation, rows)
            values[name] = {m: e["value"] for m, e in evidence[name].headline().items()}
            continue
        old = git_json(root, rev, spec.metrics)
        if old is not None:  # before per-example results: the headline variant's block, or a flat file
            values[name] = _old_values(old)
    return evidence, values


def _old_values(old: dict) -> dict[str, float]:
    """Headline figures of a metrics file written before per-example results: flat, or the `finetuned` block."""
    block = old.get("finetuned") if isinstance(old.get("finetuned"), dict) else old
    return {k: v for k, v in block.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def data_changes(new: dict | None, old: dict | None) -> tuple[list[str], dict[str, dict[str, int]]]:
    """The data table of the report, and per dataset the rise in quarantined and duplicate records."""
    lines = ["## What changed in the data", ""]
    if not new:
        return lines + ["No reports/data_quality.json in the workspace: run `make run` first.", ""], {}
    lines += ["| dataset | records at base | records now | added | quarantined (base → now) | "
              "duplicates (base → now) |", "|---|---:|---:|---:|---:|---:|"]
    old_sets = (old or {}).get("datasets", {})
    rises: dict[str, dict[str, int]] = {}
    for name, counts in sorted(new.get("datasets", {}).items()):
        before = old_sets.get(name, {})
        accepted = before.get("accepted")
        added = f"{counts['accepted'] - accepted:+d}" if accepted is not None else "all (no base)"
        cells = [f"{before.get(k, '–')} → {counts[k]}" for k in ("quarantined", "duplicates")]
        lines.append(f"| {name} | {accepted if accepted is not None else '–'} | {counts['accepted']} | {added} | "
                     + " | ".join(cells) + " |")
        if before:
            rises[name] = {k: counts[k] - before.get(k, 0) for k in ("quarantined", "duplicates")}
    reasons: dict[str, int] = {}
    for q in new.get("quarantine", []):
        reasons[q.get("reason", "?")] = reasons.get(q.get("reason", "?"), 0) + 1
    if reasons:
        lines += ["", "Quarantine reasons: " + ", ".join(f"{r} ({n})" for r, n in sorted(reasons.items()))]
    return lines + [""], rises


def _num(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:g}" if float(x).is_integer() and abs(x) >= 2 else f"{x:.{digits}f}"


def _signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.3f}"


def model_section(title: str, evidence: ModelEvidence, comparisons: list[Comparison], short: str) -> list[str]:
    """The headline table of one model: base, new with its interval, change on shared ids with its interval."""
    shared = next((c.change for c in comparisons if c.change is not None), None)
    lines = [f"## {title}", "",
             f"Headline variant `{evidence.variant}`; test examples: {len(evidence.headline_rows() or [])}"
             + (f" ({shared.n_shared} evaluated at `{short}` too, {shared.n_new_only} new)" if shared else ""), "",
             "| metric | better | base | new (95% interval) | change on shared ids (95% interval) | |",
             "|---|---|---:|---:|---:|:--|"]
    for c in comparisons:
        new = (_num(c.new["value"]) if c.direction == "count"
               else f"{_num(c.new['value'])} ({_num(c.new['low'])}–{_num(c.new['high'])})")
        if c.change is not None and c.change.diff is not None:
            change = f"{_signed(c.change.diff)} ({_signed(c.change.low)} to {_signed(c.change.high)})"
        elif c.base is not None and c.direction == "count":
            change = f"{c.new['value'] - c.base:+g}"
        elif c.base is not None:
            change = f"{_signed(c.new['value'] - c.base)} (not paired)"
        else:
            change = "–"
        lines.append(f"| {c.metric} | {ARROW[c.direction]} | {_num(c.base)} | {new} | {change} | {MARK[c.outcome]} |")
    fresh = [c for c in comparisons if c.change is not None and c.change.n_new_only and c.change.new_only is not None]
    if fresh:
        lines += ["", f"On the {fresh[0].change.n_new_only} test ids new this month alone: "
                  + ", ".join(f"{c.metric} {_num(c.change.new_only)}" for c in fresh) + "."]
    gated = [c for c in comparisons if c.direction != "count"]
    if gated:
        lines += ["", "Smallest change this test set can tell from noise (half the 95% interval): "
                  + ", ".join(f"{c.metric} ±{_num(detectable_change(c.new))}" for c in gated) + "."]
    return lines + [""]


def full_table(new: dict[str, ModelEvidence], base: dict[str, ModelEvidence]) -> list[str]:
    lines = ["<details><summary>Every metric of every variant</summary>", "",
             "| model | variant | metric | better | base | new | 95% interval | n |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for model, evidence in sorted(new.items()):
        specs = evidence.specs
        old = base.get(model)
        for variant, metrics in sorted(evidence.evaluation["variants"].items()):
            for metric, est in sorted(metrics.items()):
                before = (old.evaluation["variants"].get(variant, {}).get(metric, {}).get("value")
                          if old is not None else None)
                direction = specs[metric].direction if metric in specs else "count"
                lines.append(f"| {model} | {variant} | {metric} | {ARROW[direction]} | {_num(before)} | "
                             f"{_num(est['value'])} | {_num(est['low'])}–{_num(est['high'])} | {est['n']} |")
    return lines + ["", "</details>", ""]


@dataclass
class Report:
    markdown: str
    verdict: Verdict
    base: str


def build_report(cfg: EvaluateConfig, root: Path = Path("."), base: str | None = None) -> Report:
    base = resolve_base(root, base)
    short = base[:8]
    new = load_evidence(cfg, root)
    if not new:
        raise ReportError("no model has an evaluation in the workspace: run `make run` (or `dvc repro`) first")
    try:
        old, old_values = base_evidence(cfg, root, base)
    except EvidenceError as e:
        raise ReportError(f"the base revision {short}'s evaluation cannot be read: {e}") from e

    dq_path = root / cfg.data_quality
    dq_new = json.loads(dq_path.read_text(encoding="utf-8")) if dq_path.is_file() else None
    data_lines, rises = data_changes(dq_new, git_json(root, base, cfg.data_quality))
    new_stats_path, old_stats = root / CORPUS_STATS, git_json(root, base, CORPUS_STATS)
    drift_checked = old_stats is not None and new_stats_path.is_file()
    drift = drift_warnings(old_stats, json.loads(new_stats_path.read_text()), cfg.drift) if drift_checked else []
    verdict = judge(new, old, old_values, cfg.gate, drift, rises, has_base=bool(old_values))

    lines = [f"# Model report against `{short}`", "", f"## Verdict: {ICON[verdict.status]}", ""]
    lines += [f"- **{f.level}** {f.message}" for f in verdict.findings] or [
        "No metric fell beyond noise, no floor was crossed, no data warning."]
    lines += ["", "A change counts only when its paired 95% bootstrap interval over the test ids both revisions "
              "evaluated excludes zero; `fail` also needs it beyond the metric's `max_drop` (params.yaml "
              "`evaluate.gate`). Counts never gate; floors are absolute.", ""]
    plot_dir = root / PR_PLOTS
    plots = []
    for model, evidence in sorted(new.items()):
        comparisons = [c for c in verdict.comparisons if c.model == model]
        lines += model_section(cfg.models[model].title or model, evidence, comparisons, short)
        p = base_vs_new(model, comparisons, plot_dir / f"{model}_base_vs_new.png", short)
        if p:
            plots.append(p)
    missing = sorted(set(cfg.models) - set(new))
    if missing:
        lines += [f"Not evaluated in this revision: {', '.join(missing)}.", ""]
    lines += data_lines
    lines += ["**Drift warnings:**" if drift else
              ("No drift warnings." if drift_checked else f"Drift not checked: the base revision has no "
               f"{CORPUS_STATS}."), *[f"- {w}" for w in drift], ""]
    lines += ["## Plots", ""]
    lines += [f"![{p.stem}](pr/{p.name})" for p in plots]
    lines += [f"![{p.stem}](plots/{p.name})" for p in sorted((root / PLOTS).glob("*.png"))] or ["No plots rendered."]
    params = params_diff(root, base)
    lines += ["", f"## Params changed (`dvc params diff {short}`)", ""]
    if params:
        lines += ["| param | base | new |", "|---|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(str(d.get('old')))} | {_cell(str(d.get('new')))} |"
                  for k, d in sorted(params.items())]
    else:
        lines.append("No parameter changed.")
    lines += ["", *full_table(new, old)]
    cards = sorted((root / CARDS).glob("*.md"))
    if cards:
        lines += ["## Model cards", "", *[f"- [{c.stem}](cards/{c.name})" for c in cards]]
    return Report("\n".join(lines) + "\n", verdict, base)


def _cell(text: str) -> str:
    """Markdown-safe table cell: gate patterns such as `*recall@*` in param names must not turn into italics,
    and a `|` inside a value (a list or dict param) must not split the row."""
    return text.replace("|", "\\|").replace("*", "\\*")
