"""Benchmark: the evaluator's decoding before and after issue 15's speed-up, on the stage's own prompts, one run.

Three ways to decode the same seeded test messages of one row (constrained, greedy, the stage's budget and
batch size), each checked to give the same outputs as the first:
- growing: transformers' default growing KV cache, each batch to its longest row (the code before);
- static: the KV cache preallocated and written in place (`reprolab.llm.generate.static_cache`);
- static + early exit: also dropping finished rows between chunks of `chunk_tokens` (the stage's path).
Prints seconds per row style and the ratio to `growing`. Needs the stage's outputs (splits/, corpus/, and
models/llm/adapter for the fine-tuned row): run it after `make run`.

Usage: python bench/llm_decode.py [--n 48] [--styles zero_shot,few_shot,finetuned]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stages  # noqa: E402,F401,I001  (the CPU pin the stages run under: before torch is imported)
import torch  # noqa: E402
from reprolab.config import load_section  # noqa: E402
from reprolab.llm import evaluate, generate  # noqa: E402
from reprolab.llm.fewshot import ShotSelector  # noqa: E402
from reprolab.llm.model import load_chat_model  # noqa: E402
from reprolab.llm.pipeline import FinetuneMistralConfig  # noqa: E402
from reprolab.llm.tasks import load_task  # noqa: E402
from reprolab.llm.train import load_finetuned, pick_subset  # noqa: E402

WAYS = ("growing", "static", "static + early exit")


def decode(way: str, model, tokenizer, style: str, ontology, examples, shots, cfg) -> tuple[list[str], float]:
    chunk = 24 if way == "static + early exit" else cfg.max_new_tokens  # one chunk: no early exit
    real = generate.generate_batched

    def batched(*args, **kwargs):
        return real(*args, **{**kwargs, "chunk_tokens": chunk})

    with mock.patch.object(evaluate, "generate_batched", batched), \
            mock.patch.object(generate, "static_ok", lambda m: way != "growing"):
        start = time.perf_counter()
        row = evaluate.evaluate_row(model, tokenizer, style, ontology, examples, constrained=True,
                                    shots=shots if style == "few_shot" else None,
                                    max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size)
        return [o["output"] for o in row.outputs], time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--styles", default="zero_shot,few_shot,finetuned")
    args = ap.parse_args()
    cfg = load_section("finetune_mistral", FinetuneMistralConfig)
    torch.set_num_threads(cfg.local.threads)
    ontology, data = load_task(cfg.task, Path("splits"), Path("corpus"), cfg.domains)
    examples = sorted(pick_subset(data["test"], cfg.eval_examples, cfg.seed), key=lambda e: e.id)[: args.n]
    base, tokenizer = load_chat_model(cfg.local.model, device=cfg.local.device)
    shots = ShotSelector(data["train"], cfg.few_shot_k).select_many([ex.text for ex in examples])
    print(f"{len(examples)} seeded test messages, batch {cfg.eval_batch_size}, budget {cfg.max_new_tokens} tokens, "
          f"{cfg.local.threads} threads")
    print(f"{'row':<12s} " + " ".join(f"{w:>22s}" for w in WAYS) + "   same outputs")
    for style in args.styles.split(","):
        model = base
        if style == "finetuned":
            model, _ = load_finetuned(cfg.local.model, Path("models/llm/adapter"), device=cfg.local.device)
        results = {way: decode(way, model, tokenizer, style, ontology, examples, shots, cfg) for way in WAYS}
        first_texts, first_seconds = results[WAYS[0]]
        cells = [f"{s:7.1f} s ({first_seconds / s:4.2f}x)" for _, s in results.values()]
        same = all(texts == first_texts for texts, _ in results.values())
        print(f"{style:<12s} " + " ".join(f"{c:>22s}" for c in cells) + f"   {same}")
        if not same:
            raise SystemExit(f"{style}: the decoding ways disagree on an output")


if __name__ == "__main__":
    main()
