"""Stage finetune_mistral: fit the classical and hybrid extractors, fine-tune the LLM (local LoRA/QLoRA or the
Mistral API), evaluate every row with 95% intervals, and write the served design into models/llm."""

from __future__ import annotations

import json

from reprolab import cli
from reprolab.config import load_section
from reprolab.evaluation.extraction import evidence_summary, metric_specs
from reprolab.evaluation.evidence import write_evaluation
from reprolab.llm.pipeline import FinetuneMistralConfig, run_api, run_local, split_seconds
from reprolab.llm.system import write_manifest
from reprolab.llm.tasks import load_task
from stages.common import CORPUS, MODELS, REPORTS, SPLITS, write_json

MODEL_DIR = MODELS / "llm"
REPORT_DIR = REPORTS / "llm"
HEADLINE = {"hybrid": "hybrid", "llm": "finetuned_constrained"}


def main() -> None:
    cfg = load_section("finetune_mistral", FinetuneMistralConfig)
    runner = run_local if cfg.backend == "local" else run_api
    result = runner(cfg, SPLITS, CORPUS, MODEL_DIR)
    ontology, _ = load_task(cfg.task, SPLITS, CORPUS, cfg.domains)
    design = cfg.served_design()
    headline = HEADLINE[design]
    summary = evidence_summary(result.evidence, headline, seed=cfg.seed)
    meta = {"task": cfg.task, "domains": cfg.domains if cfg.task == "nlupp" else [], "backend": cfg.backend,
            "design": design}
    costs, seconds = split_seconds(result.extra.get("costs", {}))
    write_evaluation(REPORT_DIR, metric_specs(), result.evidence, headline,
                     extra={**result.extra, "costs": costs, "paired_vs_headline": summary["paired"], "eval": meta},
                     seed=cfg.seed)
    write_json(REPORT_DIR / "errors.json", {"per_label": summary["per_label"], "confusions": summary["confusions"]})
    # Measured seconds: gitignored, never a DVC output (the presentation reads it when present).
    write_json(REPORT_DIR / "timing.json", {
        **{row: result.rows[row].timing for row in result.rows},
        "train": result.train_timing,
        "costs": seconds,
        "parts": result.seconds,
    })
    write_json(REPORT_DIR / "train_log.json", result.losses)
    write_json(MODEL_DIR / "model.json", result.model_card)
    write_manifest(MODEL_DIR, design, ontology, {**result.model_card, "headline_variant": headline})
    samples = REPORT_DIR / "outputs.jsonl"
    with open(samples, "w", encoding="utf-8") as f:
        for row in result.rows:
            for out in result.rows[row].outputs:
                f.write(json.dumps({"row": row, **out}, ensure_ascii=False, sort_keys=True) + "\n")


if __name__ == "__main__":
    cli.run(main, "finetune_mistral")
