"""DVC stage `evaluate`: every model's evaluation checked against its per-example rows, plots, model cards,
corpus stats. The headline figures stay in each model's own metrics file (declared once in dvc.yaml)."""

from __future__ import annotations

from pathlib import Path

from reprolab import cli
from reprolab.config import load_section, read_params
from reprolab.evaluation.cards import data_snapshot_hash, evidence_lines, render_card
from reprolab.evaluation.drift import corpus_stats
from reprolab.evaluation.plots import render_all
from reprolab.evaluation.presentation import render_presentation
from reprolab.evaluation.summary import EvaluateConfig, load_evidence
from stages.common import CORPUS, REPORTS, write_json


def main() -> None:
    cfg = load_section("evaluate", EvaluateConfig)
    evidence = load_evidence(cfg)
    write_json(REPORTS / "corpus_stats.json", corpus_stats(CORPUS))
    logs = {name: [Path(p) for p in spec.training_logs] for name, spec in cfg.models.items()}
    # Both folders exist even before any model lands: DVC declares them as outputs.
    (REPORTS / "cards").mkdir(parents=True, exist_ok=True)
    plots = render_all({name: ev.evaluation for name, ev in evidence.items()}, logs, REPORTS / "plots")
    (REPORTS / "plots").mkdir(parents=True, exist_ok=True)
    params, snapshot = read_params(), data_snapshot_hash()
    for name, ev in sorted(evidence.items()):
        card = render_card(name, cfg.models[name], ev.evaluation, params, snapshot,
                           [str(p) for p in plots if p.name.startswith(f"{name}_")])
        (REPORTS / "cards" / f"{name}.md").write_text(card + "\n".join(evidence_lines(ev)) + "\n", encoding="utf-8")
    (REPORTS / "presentation").mkdir(parents=True, exist_ok=True)
    if "llm" in evidence:  # the one page for people who will not read code
        render_presentation(REPORTS / "llm", REPORTS / "presentation" / "extractor.md")
    missing = sorted(set(cfg.models) - set(evidence))
    print(f"evaluate: {sorted(evidence) or 'no model'} checked against their per-example rows"
          + (f"; not yet evaluated: {missing}" if missing else "") + f"; {len(plots)} plots")


if __name__ == "__main__":
    cli.run(main, "evaluate")
