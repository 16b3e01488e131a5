"""The finetune_mistral stage's logic: train (local LoRA/QLoRA or the Mistral API), then evaluate four rows.

Rows: zero_shot (ontology in the prompt), few_shot (k similar training examples), finetuned, and
finetuned_constrained (same model, JSON-schema constrained decoding). All use the same decoding settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from reprolab.config import StrictConfig
from reprolab.llm.evaluate import RowResult, evaluate_row
from reprolab.llm.fewshot import ShotSelector
from reprolab.llm.mistral_api import MistralApiConfig
from reprolab.llm.model import cpu_autocast, load_chat_model
from reprolab.llm.tasks import load_task
from reprolab.llm.train import LoraTrainConfig, load_finetuned, pick_subset, train_lora

log = logging.getLogger(__name__)

ROWS = ("zero_shot", "few_shot", "finetuned", "finetuned_constrained")


class FinetuneMistralConfig(StrictConfig):
    backend: Literal["local", "mistral_api"] = "local"
    task: Literal["nlupp", "viggo"] = "nlupp"
    domains: list[str] = ["banking"]     # NLU++ domains; ignored for viggo
    eval_examples: int = 48              # fixed seeded subset of the test split (0 = all of it)
    eval_batch_size: int = 16
    max_new_tokens: int = 64
    few_shot_k: int = 3
    merge_adapter: bool = False          # also write a merged full model under models/llm/merged
    seed: int = 0
    local: LoraTrainConfig = LoraTrainConfig()
    api: MistralApiConfig = MistralApiConfig()


@dataclass
class StageResult:
    rows: dict[str, RowResult]
    losses: list[dict] = field(default_factory=list)        # per-step training loss, for `dvc plots`
    train_timing: dict = field(default_factory=dict)
    model_card: dict = field(default_factory=dict)


def run_local(cfg: FinetuneMistralConfig, splits: Path, corpus: Path, model_dir: Path) -> StageResult:
    torch.manual_seed(cfg.seed)
    ontology, data = load_task(cfg.task, splits, corpus, cfg.domains)
    test = sorted(pick_subset(data["test"], cfg.eval_examples, cfg.seed), key=lambda e: e.id)
    log.info("evaluation subset", extra={"task": cfg.task, "domains": cfg.domains, "n": len(test),
                                         "of": len(data["test"])})
    common = dict(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size)
    rows: dict[str, RowResult] = {}

    bf16 = cpu_autocast(cfg.local.device, cfg.local.cpu_bf16)  # every row decodes under the same precision
    base, tokenizer = load_chat_model(cfg.local.model, device=cfg.local.device)
    with bf16:
        rows["zero_shot"] = evaluate_row(base, tokenizer, "zero_shot", ontology, test, name="zero_shot", **common)
        shots = ShotSelector(data["train"], cfg.few_shot_k).select_many([ex.text for ex in test])
        rows["few_shot"] = evaluate_row(
            base, tokenizer, "few_shot", ontology, test, shots=shots, name="few_shot", **common
        )
    del base

    train = train_lora(cfg.local, ontology, data["train"], model_dir)
    model, tokenizer = load_finetuned(cfg.local.model, train.adapter_dir, device=cfg.local.device)
    if cfg.merge_adapter:
        model.save_pretrained(model_dir / "merged")
        tokenizer.save_pretrained(model_dir / "merged")
    with bf16:
        rows["finetuned"] = evaluate_row(model, tokenizer, "finetuned", ontology, test, name="finetuned", **common)
        rows["finetuned_constrained"] = evaluate_row(
            model, tokenizer, "finetuned", ontology, test, constrained=True, name="finetuned_constrained", **common
        )
    card = {
        "backend": "local", "base_model": cfg.local.model, "adapter": "adapter", "task": cfg.task,
        "domains": cfg.domains if cfg.task == "nlupp" else [], "train_examples": train.examples,
        "steps": len(train.losses), "quantize_4bit": cfg.local.quantize_4bit,
        "merged": "merged" if cfg.merge_adapter else None,
    }
    timing = {"seconds": round(train.seconds, 1), "tokens": train.train_tokens,
              "tokens_per_second": round(train.tokens_per_second, 1)}
    return StageResult(rows, train.losses, timing, card)


def run_api(cfg: FinetuneMistralConfig, splits: Path, corpus: Path, model_dir: Path) -> StageResult:
    """Fine-tune through Mistral's API, then evaluate the four rows through chat.complete.

    Baselines run on api.base_model; "constrained" uses the JSON-schema response format, the others JSON mode.
    """
    import time

    from reprolab.llm import prompts
    from reprolab.llm.evaluate import score_row
    from reprolab.llm.mistral_api import MistralFineTuner, complete_json, require_api_key, write_finetune_jsonl
    from reprolab.llm.schema import task_json_schema

    key = require_api_key()
    ontology, data = load_task(cfg.task, splits, corpus, cfg.domains)
    train = pick_subset(data["train"], cfg.api.max_train_examples, cfg.seed)
    n_train = write_finetune_jsonl(model_dir / "mistral_train.jsonl", ontology, train)
    n_val = write_finetune_jsonl(model_dir / "mistral_validation.jsonl", ontology, data["validation"])
    tuner = MistralFineTuner(cfg.api, key)
    try:
        outcome = tuner.run(model_dir / "mistral_train.jsonl", model_dir / "mistral_validation.jsonl")
        test = sorted(pick_subset(data["test"], cfg.eval_examples, cfg.seed), key=lambda e: e.id)
        shots = ShotSelector(data["train"], cfg.few_shot_k).select_many([ex.text for ex in test])
        schema = task_json_schema(ontology)
        plan = {
            "zero_shot": ("zero_shot", cfg.api.base_model, None),
            "few_shot": ("few_shot", cfg.api.base_model, None),
            "finetuned": ("finetuned", outcome.fine_tuned_model, None),
            "finetuned_constrained": ("finetuned", outcome.fine_tuned_model, schema),
        }
        rows = {}
        for row, (style, model, row_schema) in plan.items():
            texts, tokens, start = [], [], time.perf_counter()
            for i, ex in enumerate(test):
                user = prompts.user_turn(style, ontology, ex.text, shots[i] if style == "few_shot" else ())
                text, n = complete_json(tuner.client, model, user, row_schema, cfg.max_new_tokens)
                texts.append(text)
                tokens.append(n)
            rows[row] = score_row(test, texts, tokens, time.perf_counter() - start, ontology, row)
    finally:
        tuner.close()
    card = {"backend": "mistral_api", "base_model": cfg.api.base_model, "job_id": outcome.job_id,
            "fine_tuned_model": outcome.fine_tuned_model, "estimate": outcome.estimate,
            "train_examples": n_train, "validation_examples": n_val, "task": cfg.task}
    return StageResult(rows, [], {"estimate": outcome.estimate}, card)
