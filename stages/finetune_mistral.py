"""Stage finetune_mistral: fine-tune the extractor (local LoRA/QLoRA or the Mistral API) and evaluate four rows."""

from __future__ import annotations

import json

from reprolab import cli
from reprolab.config import load_section
from reprolab.llm.pipeline import ROWS, FinetuneMistralConfig, run_api, run_local
from stages.common import CORPUS, MODELS, REPORTS, SPLITS, write_json

MODEL_DIR = MODELS / "llm"
REPORT_DIR = REPORTS / "llm"


def main() -> None:
    cfg = load_section("finetune_mistral", FinetuneMistralConfig)
    runner = run_local if cfg.backend == "local" else run_api
    result = runner(cfg, SPLITS, CORPUS, MODEL_DIR)
    meta = {"task": cfg.task, "domains": cfg.domains if cfg.task == "nlupp" else [],
            "eval_examples": result.rows["finetuned"].metrics["n"], "backend": cfg.backend}
    write_json(REPORT_DIR / "metrics.json", {**{row: result.rows[row].metrics for row in ROWS}, "eval": meta})
    write_json(REPORT_DIR / "errors.json", {row: result.rows[row].errors for row in ROWS})
    write_json(REPORT_DIR / "timing.json", {
        **{row: result.rows[row].timing for row in ROWS},
        "train": result.train_timing,
    })
    write_json(REPORT_DIR / "train_log.json", result.losses)
    write_json(MODEL_DIR / "model.json", result.model_card)
    samples = REPORT_DIR / "outputs.jsonl"
    with open(samples, "w", encoding="utf-8") as f:
        for row in ROWS:
            for out in result.rows[row].outputs:
                f.write(json.dumps({"row": row, **out}, ensure_ascii=False, sort_keys=True) + "\n")


if __name__ == "__main__":
    cli.run(main, "finetune_mistral")
