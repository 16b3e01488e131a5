"""The finetune_mistral stage's logic: fit the classical and hybrid extractors, train the LLM (local LoRA/QLoRA
or the Mistral API), evaluate every row, and write the served design into the model directory.

LLM rows: zero_shot (ontology in the prompt), few_shot (k similar training examples), each also under JSON-schema
constrained decoding (valid by construction, so they measure understanding), finetuned and finetuned_constrained.
All decode the same way, on one seeded subset of the test split (`eval_examples`; 0 = all of it).
Non-LLM rows, always on the WHOLE test split: classical (MiniLM + logistic regression intents, pattern slots) and
hybrid (the same intents, a trained slot tagger, a calibrated confidence). See docs/extraction.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from reprolab.config import StrictConfig
from reprolab.llm.evaluate import RowResult, evaluate_row
from reprolab.llm.fewshot import ShotSelector
from reprolab.llm.mistral_api import MistralApiConfig
from reprolab.llm.model import cpu_autocast, load_chat_model
from reprolab.llm.system import ClassicalConfig, evaluate_system, fit_classical, routing_summary, save_hybrid
from reprolab.llm.tasks import load_task
from reprolab.llm.train import (
    LoraTrainConfig, canonical_tokenizer_config, load_finetuned, pick_subset, train_lora,
)

log = logging.getLogger(__name__)

ROWS = ("zero_shot", "zero_shot_constrained", "few_shot", "few_shot_constrained", "finetuned",
        "finetuned_constrained")
SYSTEM_ROWS = ("classical", "hybrid")


class FinetuneMistralConfig(StrictConfig):
    backend: Literal["local", "mistral_api"] = "local"
    task: Literal["nlupp", "viggo"] = "nlupp"
    domains: list[str] = ["banking"]     # NLU++ domains; ignored for viggo
    eval_examples: int = 48              # LLM rows: fixed seeded subset of the test split (0 = all of it)
    llm_rows: list[str] = list(ROWS)     # which LLM rows to evaluate (finetuned_constrained is always run)
    design: Literal["hybrid", "llm"] = "hybrid"  # what models/llm serves (chosen on validation; NLU++ only)

    def served_design(self) -> str:
        """hybrid needs NLU++ (its tagger and value rules); any other task serves the fine-tuned LLM."""
        return self.design if self.task == "nlupp" else "llm"
    classical: ClassicalConfig = ClassicalConfig()
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
    evidence: list[dict] = field(default_factory=list)      # per (message, row): reports/llm/examples.jsonl
    extra: dict = field(default_factory=dict)               # costs, tuning, routing, subsets: evaluation.json
    seconds: dict = field(default_factory=dict)             # wall seconds of the stage's parts: timing.json only


class PartClock:
    """Wall seconds of the stage's named parts (`with clock("train"): ...`), for timing.json."""

    def __init__(self):
        self.parts: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.parts[name] = round(time.perf_counter() - start, 1)


def system_rows(cfg: FinetuneMistralConfig, ontology, data, splits: Path, model_dir: Path) -> tuple[list, dict]:
    """classical and hybrid on the whole test split; the hybrid saved into the model directory.

    NLU++ only (the tagger learns NLU++'s slot spans and the value rules follow its shapes): other tasks get
    no system rows and serve the LLM.
    """
    if cfg.task != "nlupp":
        return [], {"costs": {}}
    fitted = fit_classical(cfg.classical, ontology, data, splits, cfg.domains, cfg.seed)
    save_hybrid(model_dir, fitted, ontology)
    evidence, costs = [], {}
    rows, costs["classical"] = evaluate_system(fitted.classical, data["test"], "classical")
    evidence += rows
    rows, costs["hybrid"] = evaluate_system(fitted.hybrid, data["test"], "hybrid", fitted.calibrator)
    evidence += rows
    for name in SYSTEM_ROWS:
        costs[name]["fit_seconds"] = round(fitted.fit_seconds, 1)
    extra = {"costs": costs, "tuning": fitted.tuning, "data": {split: len(data[split]) for split in data},
             "routing": {precision: routing_summary(rows, cut) for precision, cut in fitted.route_thresholds.items()}}
    return evidence, extra


def split_seconds(costs: dict[str, dict]) -> tuple[dict[str, dict], dict[str, dict]]:
    """Per-row costs split into (deterministic: messages, tokens per 1,000) and (measured in seconds).

    Wall-clock and CPU seconds differ on every run, so they never go into a DVC output: the stage writes them
    to the gitignored reports/llm/timing.json (issue 16); tokens per 1,000 messages stay in evaluation.json.
    """
    kept = {row: {k: v for k, v in cost.items() if "second" not in k} for row, cost in costs.items()}
    seconds = {row: {k: v for k, v in cost.items() if "second" in k} for row, cost in costs.items()}
    return kept, seconds


def llm_evidence(rows: dict[str, RowResult], n_test: int) -> tuple[list[dict], dict]:
    """Evidence rows and per-1,000-message costs of the LLM rows (prompt + generated tokens, CPU seconds)."""
    from reprolab.evaluation.extraction import example_row

    evidence, costs = [], {}
    for name, row in rows.items():
        texts = {out["id"]: out["text"] for out in row.outputs}
        evidence += [example_row(j, name, subset=len(row.judged) < n_test, text=texts[j.id]) for j in row.judged]
        n = len(row.judged)
        t = row.timing
        costs[name] = {"messages": n, "wall_seconds": t.get("seconds"), "cpu_seconds": t.get("cpu_seconds"),
                       "cpu_seconds_per_1000": round(1000 * t["cpu_seconds"] / n, 1) if t.get("cpu_seconds") else None,
                       "tokens_per_1000": round(1000 * (t.get("prompt_tokens", 0) + t.get("new_tokens", 0)) / n)}
    return evidence, costs


def run_local(cfg: FinetuneMistralConfig, splits: Path, corpus: Path, model_dir: Path) -> StageResult:
    torch.manual_seed(cfg.seed)
    ontology, data = load_task(cfg.task, splits, corpus, cfg.domains)
    test = sorted(pick_subset(data["test"], cfg.eval_examples, cfg.seed), key=lambda e: e.id)
    log.info("evaluation subset", extra={"task": cfg.task, "domains": cfg.domains, "n": len(test),
                                         "of": len(data["test"])})
    common = dict(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size)
    rows: dict[str, RowResult] = {}

    wanted = set(cfg.llm_rows) | {"finetuned_constrained"}
    unknown = wanted - set(ROWS)
    if unknown:
        raise ValueError(f"finetune_mistral.llm_rows: unknown row(s) {sorted(unknown)}; known: {list(ROWS)}")
    clock = PartClock()
    with clock("classical_and_hybrid"):
        evidence, extra = system_rows(cfg, ontology, data, splits, model_dir)

    bf16 = cpu_autocast(cfg.local.device, cfg.local.cpu_bf16)  # every row decodes under the same precision
    with clock("load_base"):
        base, tokenizer = load_chat_model(cfg.local.model, device=cfg.local.device)
    with bf16:
        shots = None
        if any(name.startswith("few_shot") for name in wanted):
            with clock("few_shot_selection"):
                shots = ShotSelector(data["train"], cfg.few_shot_k).select_many([ex.text for ex in test])
        for style in ("zero_shot", "few_shot"):
            for constrained in (False, True):
                name = style + ("_constrained" if constrained else "")
                if name in wanted:
                    with clock(name):
                        rows[name] = evaluate_row(base, tokenizer, style, ontology, test, constrained=constrained,
                                                  shots=shots if style == "few_shot" else None, name=name,
                                                  **common)
    del base

    with clock("train"):
        train = train_lora(cfg.local, ontology, data["train"], model_dir)
    with clock("load_finetuned"):
        model, tokenizer = load_finetuned(cfg.local.model, train.adapter_dir, device=cfg.local.device)
        if cfg.merge_adapter:
            model.save_pretrained(model_dir / "merged")
            tokenizer.save_pretrained(model_dir / "merged")
            canonical_tokenizer_config(model_dir / "merged")
    with bf16:
        for name in ("finetuned", "finetuned_constrained"):
            if name in wanted:
                with clock(name):
                    rows[name] = evaluate_row(model, tokenizer, "finetuned", ontology, test,
                                              constrained=name.endswith("_constrained"), name=name, **common)
    card = {
        "backend": "local", "base_model": cfg.local.model, "adapter": "adapter", "task": cfg.task,
        "domains": cfg.domains if cfg.task == "nlupp" else [], "train_examples": train.examples,
        "steps": len(train.losses), "quantize_4bit": cfg.local.quantize_4bit,
        "merged": "merged" if cfg.merge_adapter else None,
    }
    timing = {"seconds": round(train.seconds, 1), "tokens": train.train_tokens,
              "tokens_per_second": round(train.tokens_per_second, 1)}
    llm_rows, llm_costs = llm_evidence(rows, len(data["test"]))
    extra["costs"].update(llm_costs)
    extra["subsets"] = {name: len(r.judged) for name, r in rows.items()} | (
        {n: len(data["test"]) for n in SYSTEM_ROWS} if evidence else {})
    extra["train"] = {"tokens": train.train_tokens, "steps": len(train.losses)}
    return StageResult(rows, train.losses, timing, card, evidence + llm_rows, extra, clock.parts)


def run_api(cfg: FinetuneMistralConfig, splits: Path, corpus: Path, model_dir: Path) -> StageResult:
    """Fine-tune through Mistral's API, then evaluate the four rows through chat.complete.

    Baselines run on api.base_model; "constrained" uses the JSON-schema response format, the others JSON mode.
    """

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
            "zero_shot_constrained": ("zero_shot", cfg.api.base_model, schema),
            "few_shot": ("few_shot", cfg.api.base_model, None),
            "few_shot_constrained": ("few_shot", cfg.api.base_model, schema),
            "finetuned": ("finetuned", outcome.fine_tuned_model, None),
            "finetuned_constrained": ("finetuned", outcome.fine_tuned_model, schema),
        }
        wanted = set(cfg.llm_rows) | {"finetuned_constrained"}
        rows = {}
        for row, (style, model, row_schema) in plan.items():
            if row not in wanted:
                continue
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
    evidence, extra = system_rows(cfg, ontology, data, splits, model_dir)
    llm_rows, llm_costs = llm_evidence(rows, len(data["test"]))
    extra["costs"].update(llm_costs)
    extra["subsets"] = {name: len(r.judged) for name, r in rows.items()} | (
        {n: len(data["test"]) for n in SYSTEM_ROWS} if evidence else {})
    return StageResult(rows, [], {"estimate": outcome.estimate}, card, evidence + llm_rows, extra)
