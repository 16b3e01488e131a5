"""Benchmark: the evaluator's batched generation vs one-at-a-time `generate`, same model and prompts, one run.

Also reports the stage's training tokens/s (from reports/llm/timing.json when the stage has run) and, in a short
LoRA run here, float32 against the stage's bf16 autocast on CPU (`cpu_bf16`), same steps and examples.
Usage: python bench/llm.py [--n 24] [--style finetuned] [--train-steps 8] | --batch-sweep
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reprolab.config import load_section  # noqa: E402
from reprolab.llm import prompts  # noqa: E402
from reprolab.llm.generate import generate_batched, generate_one_at_a_time  # noqa: E402
from reprolab.llm.model import load_chat_model  # noqa: E402
from reprolab.llm.pipeline import FinetuneMistralConfig  # noqa: E402
from reprolab.llm.tasks import load_task  # noqa: E402
from reprolab.llm.train import pick_subset, train_lora  # noqa: E402


def batch_sweep(model, contexts=(100, 1000), batches=(12, 24, 50), steps: int = 8, rounds: int = 2) -> None:
    """CPU seconds of one decode step (one new token per row, KV cache of `context` tokens) by batch size.

    Decoding is a sequence of such steps, one per generated token of the batch's longest row, so rows per
    batch is the knob `eval_batch_size`: the table prints the per-row cost relative to the smallest batch.
    CPU time (process_time) rather than wall time, and the best of `rounds` interleaved rounds, so a loaded
    machine distorts it less.
    """
    best: dict[tuple[int, int], float] = {}
    with torch.no_grad():
        for context in contexts:
            prefix = model(input_ids=torch.randint(100, 1000, (1, context)), use_cache=True).past_key_values
            for _ in range(rounds):
                for batch in batches:
                    cache = copy.deepcopy(prefix)
                    cache.batch_repeat_interleave(batch)
                    x = torch.randint(100, 1000, (batch, 1))
                    cache = model(input_ids=x, past_key_values=cache, use_cache=True).past_key_values  # warm-up
                    start = time.process_time()
                    for _ in range(steps):
                        cache = model(input_ids=x, past_key_values=cache, use_cache=True).past_key_values
                    per_step = (time.process_time() - start) / steps
                    best[context, batch] = min(best.get((context, batch), per_step), per_step)
    print(f"\nDecode step cost by batch size (best of {rounds} rounds of {steps} steps, CPU s, greedy, float32)")
    print(f"{'context':>8s} {'batch':>6s} {'s/step':>8s} {'s/row-step':>11s} {'vs smallest':>12s}")
    for context in contexts:
        first = best[context, batches[0]] / batches[0]
        for batch in batches:
            per_step = best[context, batch]
            print(f"{context:8d} {batch:6d} {per_step:8.3f} {per_step / batch:11.4f} "
                  f"{first / (per_step / batch):11.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--style", default="zero_shot", choices=["zero_shot", "finetuned"])
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=24)
    ap.add_argument("--train-steps", type=int, default=8)
    ap.add_argument("--batch-sweep", action="store_true", help="only the decode-step cost by batch size")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    onto, data = load_task("nlupp", Path("splits"), Path("corpus"), ["banking"])
    examples = pick_subset(data["test"], args.n, 0)
    model, tok = load_chat_model()
    if args.batch_sweep:
        batch_sweep(model)
        return
    texts = [prompts.chat_prompt(tok, prompts.user_turn(args.style, onto, ex.text)) for ex in examples]
    marker = "\u0000END\u0000"
    prefix = prompts.chat_prompt(tok, prompts.shared_prefix(args.style, onto) + marker).split(marker)[0]

    single = generate_one_at_a_time(model, tok, texts, args.max_new_tokens)
    batched = generate_batched(model, tok, texts, args.max_new_tokens, args.batch_size, shared_prefix=prefix)
    same = sum(a.strip() == b.strip() for a, b in zip(single.texts, batched.texts))
    rows = [
        ("one-at-a-time generate", single.seconds, args.n / single.seconds),
        ("batched + prefix cache (evaluator)", batched.seconds, args.n / batched.seconds),
    ]
    print(f"\nGeneration: {args.n} NLU++ banking test prompts, style={args.style}, "
          f"mean prompt {sum(batched.prompt_tokens) / args.n:.0f} tokens, max_new_tokens={args.max_new_tokens}, greedy")
    print(f"{'method':38s} {'seconds':>9s} {'examples/s':>11s} {'ratio':>7s}")
    for name, sec, eps in rows:
        print(f"{name:38s} {sec:9.1f} {eps:11.3f} {eps / rows[0][2]:6.2f}x")
    print(f"identical outputs: {same}/{args.n} (batched padding may flip near-ties in float32)")

    timing = Path("reports/llm/timing.json")
    t = json.loads(timing.read_text()).get("train", {}) if timing.is_file() else {}
    if t.get("tokens_per_second"):
        print(f"\nTraining (stage, reports/llm/timing.json): {t['tokens']} tokens in {t['seconds']} s "
              f"= {t['tokens_per_second']} tokens/s")
    if args.train_steps:
        stage = load_section("finetune_mistral", FinetuneMistralConfig).local  # the stage's recipe, fewer steps
        print(f"\nTraining here: {args.train_steps} LoRA steps of {stage.batch_size} banking examples, "
              f"top {stage.lora_top_layers} layers (params.yaml finetune_mistral.local)")
        print(f"{'precision':38s} {'seconds':>9s} {'tokens/s':>11s} {'ratio':>7s}")
        base_tps = None
        for name, bf16 in (("float32", False), ("bf16 autocast (stage: cpu_bf16)", True)):
            cfg = stage.model_copy(update={"max_steps": args.train_steps, "cpu_bf16": bf16,
                                           "max_train_examples": args.train_steps * stage.batch_size})
            r = train_lora(cfg, onto, data["train"], Path("bench/out/llm"))
            base_tps = base_tps or r.tokens_per_second
            print(f"{name:38s} {r.seconds:9.1f} {r.tokens_per_second:11.1f} {r.tokens_per_second / base_tps:6.2f}x")


if __name__ == "__main__":
    main()
