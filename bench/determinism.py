"""Benchmark: what the CPU pin (reprolab/determinism.py) costs, pinned against unpinned, in one run.

Each row is a fresh process (the pin is read when torch loads), on the stage's own recipe from params.yaml:
- train_clip: the whole stage's library call (`train_and_evaluate`), on splits/ and corpus/;
- finetune_mistral: `--llm-steps` LoRA steps of the stage's recipe, bf16 autocast (`cpu_bf16`) and float32,
  pinned and unpinned, compared by training tokens/s against unpinned bf16 (the stage before the pin); pinned
  bf16 runs `--bf16-pinned-steps` only, it is that much slower.
It also says whether pinned and unpinned gave the same bytes (they need not on this host: that is the point).
Needs splits/ and corpus/ (`dvc repro split`); writes only under a temporary folder.
Usage: python bench/determinism.py [--llm-steps 8] [--bf16-pinned-steps 2] [--skip-clip] [--skip-llm]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PIN_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
            "NPY_DISABLE_CPU_FEATURES")


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "trainer" not in p.parts:
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def worker_clip(out: Path) -> dict:
    from reprolab.clip.experiment import TrainClipConfig, train_and_evaluate
    from reprolab.clip.model import save_model_dir
    from reprolab.config import load_section

    cfg = load_section("train_clip", TrainClipConfig)
    start = time.perf_counter()
    run = train_and_evaluate(cfg, REPO / "splits", REPO / "corpus")
    seconds = time.perf_counter() - start
    save_model_dir(run.model, run.model_cfg, run.preprocess_cfg, out / "clip", run.info)
    return {"seconds": seconds, "digest": tree_digest(out / "clip"),
            "i2t_recall@5": run.metrics["finetuned"]["i2t_recall@5"]}


def worker_llm(out: Path, steps: int, bf16: bool) -> dict:
    from reprolab.config import load_section
    from reprolab.llm.pipeline import FinetuneMistralConfig
    from reprolab.llm.tasks import load_task
    from reprolab.llm.train import train_lora

    stage = load_section("finetune_mistral", FinetuneMistralConfig)
    cfg = stage.local.model_copy(update={"max_steps": steps, "cpu_bf16": bf16,
                                         "max_train_examples": steps * stage.local.batch_size})
    onto, data = load_task(stage.task, REPO / "splits", REPO / "corpus", stage.domains)
    r = train_lora(cfg, onto, data["train"], out / "llm")
    return {"seconds": r.seconds, "tokens_per_second": r.tokens_per_second,
            "digest": tree_digest(out / "llm"),
            "final_loss": r.losses[-1]["loss"] if r.losses else float("nan")}


def run_worker(kind: str, pinned: bool, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PIN_VARS}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryDirectory(prefix="bench-determinism-") as tmp:
        cmd = [sys.executable, __file__, "--worker", kind, "--out", tmp, *(["--pinned"] if pinned else []),
               *args]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm-steps", type=int, default=8)
    ap.add_argument("--bf16-pinned-steps", type=int, default=2)
    ap.add_argument("--skip-clip", action="store_true")
    ap.add_argument("--skip-llm", action="store_true")
    ap.add_argument("--worker", choices=["clip", "llm"])
    ap.add_argument("--out")
    ap.add_argument("--pinned", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    args = ap.parse_args()

    if args.worker:
        if args.pinned:
            from reprolab.determinism import pin_cpu
            pin_cpu()
        import torch  # after the pin, as in a stage process

        result = (worker_clip(Path(args.out)) if args.worker == "clip"
                  else worker_llm(Path(args.out), args.llm_steps, args.bf16))
        result["aten"] = torch.backends.cpu.get_cpu_capability()
        print(json.dumps(result))
        return

    print(f"CPU pin cost on this host (one run each; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    if not args.skip_clip:
        rows = [("unpinned", run_worker("clip", False)), ("pinned (AVX2 cap)", run_worker("clip", True))]
        base = rows[0][1]["seconds"]
        print("\ntrain_clip (stage recipe, params.yaml train_clip)")
        print(f"{'setting':24s} {'ATen':>7s} {'seconds':>9s} {'ratio':>7s} {'R@5 i2t':>8s}  model digest")
        for name, r in rows:
            print(f"{name:24s} {r['aten']:>7s} {r['seconds']:9.1f} {r['seconds'] / base:6.2f}x "
                  f"{r['i2t_recall@5']:8.3f}  {r['digest']}", flush=True)
    if not args.skip_llm:
        # pinned bf16 runs far slower per token: fewer steps, compared by tokens/s
        plan = [("unpinned, bf16 (today)", False, True, args.llm_steps),
                ("pinned, bf16", True, True, args.bf16_pinned_steps),
                ("unpinned, float32", False, False, args.llm_steps),
                ("pinned, float32", True, False, args.llm_steps)]
        print("\nfinetune_mistral: LoRA steps of the stage recipe (params.yaml finetune_mistral.local)")
        print(f"{'setting':24s} {'ATen':>7s} {'steps':>5s} {'seconds':>8s} {'tokens/s':>9s} "
              f"{'speed ratio':>11s} {'last loss':>10s}  adapter digest", flush=True)
        base = None
        for name, pinned, bf16, steps in plan:
            r = run_worker("llm", pinned, "--llm-steps", str(steps), *(["--bf16"] if bf16 else []))
            base = base or r["tokens_per_second"]
            print(f"{name:24s} {r['aten']:>7s} {steps:5d} {r['seconds']:8.1f} {r['tokens_per_second']:9.1f} "
                  f"{r['tokens_per_second'] / base:10.2f}x {r['final_loss']:10.4f}  {r['digest']}",
                  flush=True)


if __name__ == "__main__":
    main()
