"""Evaluate one prompt style + model on a fixed test subset: generate in batches, judge, compute metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from reprolab.evaluation.extraction import Judged, extraction_metrics, per_intent_errors
from reprolab.llm import prompts
from reprolab.llm.generate import generate_batched
from reprolab.llm.schema import Ontology, parse_extraction, task_json_schema
from reprolab.llm.tasks import Example

log = logging.getLogger(__name__)


@dataclass
class RowResult:
    metrics: dict
    errors: dict
    outputs: list[dict]
    timing: dict  # examples/s and seconds: machine-dependent, so kept out of the metrics file
    judged: list[Judged] = field(default_factory=list)  # per message: the evidence rows are made from these


def judge(examples: list[Example], texts: list[str], schema: dict) -> list[Judged]:
    judged = []
    for ex, text in zip(examples, texts, strict=True):
        parsed = parse_extraction(text, schema)
        judged.append(Judged(
            id=ex.id,
            gold_intents=frozenset(ex.target.intents), gold_slots=ex.target.slots,
            pred_intents=frozenset(parsed.extraction.intents), pred_slots=parsed.extraction.slots,
            json_valid=parsed.json_valid, schema_valid=parsed.schema_valid,
        ))
    return judged


def evaluate_row(
    model, tokenizer, style: str, ontology: Ontology, examples: list[Example], *,
    shots: list[list[Example]] | None = None, constrained: bool = False,
    max_new_tokens: int = 64, batch_size: int = 16, name: str = "",
) -> RowResult:
    """Metrics of one evaluation row (see reprolab.evaluation.extraction) plus prompt tokens and examples/s."""
    users = [
        prompts.user_turn(style, ontology, ex.text, shots[i] if shots else ())
        for i, ex in enumerate(examples)
    ]
    texts = [prompts.chat_prompt(tokenizer, u) for u in users]
    # The chat-formatted text every prompt of this style starts with (the few-shot examples come after it):
    # its KV cache is computed once.
    marker = "\u0000PREFIX-END\u0000"
    prefix = prompts.chat_prompt(tokenizer, prompts.shared_prefix(style, ontology) + marker).split(marker)[0]
    cpu = time.process_time()
    gen = generate_batched(
        model, tokenizer, texts, max_new_tokens=max_new_tokens, batch_size=batch_size,
        constraint_schema=task_json_schema(ontology) if constrained else None, shared_prefix=prefix, progress=name or style,
    )
    cpu = time.process_time() - cpu
    row = score_row(examples, gen.texts, gen.prompt_tokens, gen.seconds, ontology, name or style)
    row.timing.update(cpu_seconds=round(cpu, 2), new_tokens=gen.new_tokens)
    return row


def score_row(
    examples: list[Example], texts: list[str], prompt_tokens: list[int], seconds: float,
    ontology: Ontology, name: str,
) -> RowResult:
    """Judge generated texts (from any backend) against the gold labels."""
    schema = task_json_schema(ontology)
    judged = judge(examples, texts, schema)
    metrics = extraction_metrics(judged, labels=sorted(ontology.intents))
    metrics["prompt_tokens"] = sum(prompt_tokens) / len(prompt_tokens)
    metrics = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    timing = {"seconds": round(seconds, 2), "examples_per_second": round(len(examples) / seconds, 3) if seconds else 0.0}
    log.info("row evaluated", extra={"row": name, **metrics, **timing})
    outputs = [
        {"id": ex.id, "text": ex.text, "output": out, "json_valid": j.json_valid, "schema_valid": j.schema_valid}
        for ex, out, j in zip(examples, texts, judged, strict=True)
    ]
    timing["prompt_tokens"] = sum(prompt_tokens)
    return RowResult(metrics, per_intent_errors(judged), outputs, timing, judged)
