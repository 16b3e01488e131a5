"""Tune the extractor's local LoRA recipe on the VALIDATION split (never test): train, then score the
fine-tuned model with and without constrained decoding.

    .venv/bin/python bench/llm_tune.py --set max_steps=64 --set slot_example_fraction=0.5

`--set key=value` overrides finetune_mistral.local from params.yaml, `--top key=value` a top-level key
(values parsed as YAML), `--task viggo` the task. Prints one JSON line: training time, tokens/s and the
validation metrics; docs/extraction.md records the sweep that chose the default. `--stage-rows` runs the
stage's own code instead (all four rows on the test subset, into a temp dir), e.g. for ViGGO:

    .venv/bin/python bench/llm_tune.py --task viggo --stage-rows --top eval_examples=48
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reprolab import cli  # noqa: E402
from reprolab.config import load_section, with_overrides  # noqa: E402
from reprolab.llm.evaluate import evaluate_row  # noqa: E402
from reprolab.llm.model import cpu_autocast  # noqa: E402
from reprolab.llm.pipeline import FinetuneMistralConfig, run_local  # noqa: E402
from reprolab.llm.tasks import load_task  # noqa: E402
from reprolab.llm.train import load_finetuned, pick_subset, train_lora  # noqa: E402
from reprolab.logs import configure  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override finetune_mistral.local")
    ap.add_argument("--task", choices=["nlupp", "viggo"], help="override finetune_mistral.task")
    ap.add_argument("--top", action="append", default=[], metavar="KEY=VALUE",
                    help="override a top-level finetune_mistral key (eval_examples, max_new_tokens, ...)")
    ap.add_argument("--eval-examples", type=int, default=48, help="seeded subset of the validation split")
    ap.add_argument("--dump", type=Path, help="write each output beside its gold target (JSON lines)")
    ap.add_argument("--stage-rows", action="store_true",
                    help="instead: the stage's own run (all four rows on its test subset) into a temp dir")
    ap.add_argument("--unconstrained", action="store_true", help="also score plain decoding")
    args = ap.parse_args()
    configure("WARNING")

    cfg = load_section("finetune_mistral", FinetuneMistralConfig, ROOT / "params.yaml")
    overrides = [f"local.{item}" for item in args.set] + args.top + ([f"task={args.task}"] if args.task else [])
    cfg = with_overrides(cfg, overrides, "finetune_mistral")
    sets = dict(kv.partition("=")[::2] for kv in args.set)

    if args.stage_rows:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = run_local(cfg, ROOT / "splits", ROOT / "corpus", Path(tmp))
            print(json.dumps({"task": cfg.task, "set": sets, "stage_s": round(time.perf_counter() - start, 1),
                              "train": result.train_timing,
                              "rows": {k: v.metrics for k, v in result.rows.items()},
                              "timing": {k: v.timing for k, v in result.rows.items()}}), flush=True)
        return
    ontology, data = load_task(cfg.task, ROOT / "splits", ROOT / "corpus", cfg.domains)
    val = sorted(pick_subset(data["validation"], args.eval_examples, cfg.seed), key=lambda e: e.id)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train_lora(cfg.local, ontology, data["train"], Path(tmp))
        train_s = time.perf_counter() - start
        model, tokenizer = load_finetuned(cfg.local.model, result.adapter_dir, device=cfg.local.device)
        common = dict(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size)
        rows = {"finetuned_constrained": dict(constrained=True)}
        if args.unconstrained:
            rows["finetuned"] = {}
        out = {"task": cfg.task, "set": sets, "train_s": round(train_s, 1),
               "tokens_per_s": round(result.tokens_per_second, 1), "last_loss": result.losses[-1]["loss"]}
        for name, extra in rows.items():
            with cpu_autocast(cfg.local.device, cfg.local.cpu_bf16):  # as the stage decodes
                row = evaluate_row(model, tokenizer, "finetuned", ontology, val, name=name, **common, **extra)
            keep = ("intent_micro_f1", "intent_macro_f1", "slot_precision", "slot_recall", "slot_f1",
                    "exact_match", "json_valid_rate", "schema_valid_rate")
            out[name] = {k: row.metrics[k] for k in keep} | {"eval_s": row.timing["seconds"]}
            if args.dump:
                with open(args.dump, "a", encoding="utf-8") as f:
                    for ex, o in zip(val, row.outputs, strict=True):
                        f.write(json.dumps({"row": name, "text": ex.text, "gold": ex.target.to_json(),
                                            "output": o["output"]}, ensure_ascii=False) + "\n")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    cli.run(main, "llm_tune")
