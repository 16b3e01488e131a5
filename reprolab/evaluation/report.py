"""The PR report: metric and param diffs against a base revision, plots, the month's data quality, drift
warnings and the regression gate's verdict, as one markdown file that CML posts on the pull request.

Diffs come from `dvc metrics diff` / `dvc params diff` (the same numbers a reviewer gets on the command line);
the base revision's data-quality counts and corpus stats are read from git, where they are committed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from reprolab.errors import ReprolabError
from reprolab.evaluation.drift import drift_warnings
from reprolab.evaluation.gate import Verdict, direction, judge
from reprolab.evaluation.summary import EvaluateConfig

METRICS = "reports/metrics.json"
CORPUS_STATS = "reports/corpus_stats.json"
PLOTS = "reports/plots"
CARDS = "reports/cards"
ICON = {"pass": "✅ PASS", "warn": "⚠️ WARN", "fail": "❌ FAIL"}


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


def git_json(root: Path, rev: str, path: str) -> dict | None:
    """A committed JSON file at `rev`, or None when that revision does not have it."""
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def metrics_diff(root: Path, base: str) -> dict[str, dict]:
    """{metric: {"old", "new", "diff"}} for the flat summary, from `dvc metrics diff --all`."""
    out = _run([_tool("dvc"), "metrics", "diff", base, "--targets", METRICS, "--all", "--json"], root)
    return json.loads(out or "{}").get(METRICS, {})


def params_diff(root: Path, base: str) -> dict[str, dict]:
    """{param: {"old", "new"}} over every params file, changed params only."""
    out = json.loads(_run([_tool("dvc"), "params", "diff", base, "--json"], root) or "{}")
    return {f"{name}" if file == "params.yaml" else f"{file}:{name}": d
            for file, params in out.items() for name, d in params.items()}


def _fmt(x) -> str:
    if x is None:
        return "–"
    return _cell(f"{x:.4g}" if isinstance(x, float) else str(x))


def _cell(text: str) -> str:
    """Markdown-safe table cell: gate patterns such as `*recall@*` in param names must not turn into italics,
    and a `|` inside a value (a list or dict param) must not split the row."""
    return text.replace("|", "\\|").replace("*", "\\*")


def metrics_table(diff: dict[str, dict], cfg: EvaluateConfig) -> list[str]:
    lines = ["| metric | base | new | change | % | |", "|---|---:|---:|---:|---:|:-:|"]
    for name in sorted(diff):
        old, new = diff[name].get("old"), diff[name].get("new")
        both = isinstance(old, (int, float)) and isinstance(new, (int, float))
        change = new - old if both else None
        pct = f"{change / abs(old):+.1%}" if both and old else ("new" if old is None else "–")
        sign = direction(name, cfg.gate)
        if not both:
            mark = "new" if old is None else "gone"
        elif change == 0:
            mark = "="
        elif not sign:
            mark = "·"
        else:
            mark = "▲ better" if change * sign > 0 else "▼ worse"
        lines.append(f"| {name} | {_fmt(old)} | {_fmt(new)} | "
                     f"{f'{change:+.4g}' if change is not None else '–'} | {pct} | {mark} |")
    return lines


def data_quality_section(new: dict | None, old: dict | None, drift: list[str], drift_checked: bool) -> list[str]:
    lines = ["## Data quality of the month", ""]
    if not new:
        return lines + ["No reports/data_quality.json in the workspace: run `make run` first.", ""]
    lines += ["| dataset | accepted | new records | quarantined | duplicates |", "|---|---:|---:|---:|---:|"]
    old_sets = (old or {}).get("datasets", {})
    for name, counts in sorted(new.get("datasets", {}).items()):
        before = old_sets.get(name, {}).get("accepted")
        added = f"{counts['accepted'] - before:+d}" if before is not None else "all (no base)"
        lines.append(f"| {name} | {counts['accepted']} | {added} | {counts['quarantined']} | "
                     f"{counts['duplicates']} |")
    reasons: dict[str, int] = {}
    for q in new.get("quarantine", []):
        reasons[q.get("reason", "?")] = reasons.get(q.get("reason", "?"), 0) + 1
    if reasons:
        lines += ["", "Quarantine reasons: " + ", ".join(f"{r} ({n})" for r, n in sorted(reasons.items()))]
    lines += ["", "**Drift warnings:**" if drift else
              ("No drift warnings." if drift_checked else "Drift not checked: the base revision has no "
               f"{CORPUS_STATS}."), *[f"- {w}" for w in drift], ""]
    return lines


@dataclass
class Report:
    markdown: str
    verdict: Verdict
    base: str


def build_report(cfg: EvaluateConfig, root: Path = Path("."), base: str | None = None) -> Report:
    base = resolve_base(root, base)
    short = base[:8]
    new_path = root / METRICS
    if not new_path.is_file():
        raise ReportError(f"{METRICS} not found: run `make run` (or `dvc repro evaluate`) first")
    new_metrics = json.loads(new_path.read_text(encoding="utf-8"))
    diff = metrics_diff(root, base)
    base_metrics = {k: d["old"] for k, d in diff.items() if isinstance(d.get("old"), (int, float))}
    params = params_diff(root, base)

    new_stats_path = root / CORPUS_STATS
    old_stats = git_json(root, base, CORPUS_STATS)
    drift_checked = old_stats is not None and new_stats_path.is_file()
    drift = drift_warnings(old_stats, json.loads(new_stats_path.read_text()), cfg.drift) if drift_checked else []
    verdict = judge(new_metrics, base_metrics if git_json(root, base, METRICS) is not None else None,
                    cfg.gate, drift)

    dq_new_path = root / cfg.data_quality
    dq_new = json.loads(dq_new_path.read_text(encoding="utf-8")) if dq_new_path.is_file() else None
    dq_old = git_json(root, base, cfg.data_quality)

    lines = [f"# Model report against `{short}`", "",
             f"## Regression gate: {ICON[verdict.status]}", ""]
    lines += [f"- **{f.level}** {f.message}" for f in verdict.findings] or ["All gated metrics within limits."]
    lines += ["", f"## Metrics (`dvc metrics diff {short}`)", ""]
    lines += metrics_table(diff, cfg) if diff else ["No metrics to compare."]
    lines += ["", f"## Params changed (`dvc params diff {short}`)", ""]
    if params:
        lines += ["| param | base | new |", "|---|---|---|"]
        lines += [f"| {_cell(k)} | {_fmt(d.get('old'))} | {_fmt(d.get('new'))} |"
                  for k, d in sorted(params.items())]
    else:
        lines.append("No parameter changed.")
    lines += [""] + data_quality_section(dq_new, dq_old, drift, drift_checked)
    plots = sorted((root / PLOTS).glob("*.png"))
    lines += ["## Plots", ""]
    lines += [f"![{p.stem}](plots/{p.name})" for p in plots] or ["No plots rendered."]
    cards = sorted((root / CARDS).glob("*.md"))
    if cards:
        lines += ["", "## Model cards", "", *[f"- [{c.stem}](cards/{c.name})" for c in cards]]
    return Report("\n".join(lines) + "\n", verdict, base)
