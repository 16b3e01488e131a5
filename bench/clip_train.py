"""Benchmark: train_clip's training loop against a faithful re-implementation of the assessment notebook's loop
(the take-home notebook the art samples come from, described in samples/art/PROVENANCE.md; not in this repo).

Same model (params.yaml train_clip.model), batch size 16, same machine, one run; each loop runs in its own
process so peak memory (ru_maxrss) is its own.

  notebook        every step opens and decodes the batch's JPEGs, resizes them, runs the whole model
                  (both towers), open_clip's ClipLoss, AdamW + OneCycleLR (the notebook's loop)
  cached pixels   images decoded and resized once; the whole model runs every step (the stage's path for
                  architectures without a tower split, e.g. production RN50)
  stage           the stage's loop (reprolab.clip.train.train): frozen layers' outputs cached once
                  (reprolab.clip.features), only the trainable layers run

Throughput counts training images per second over the timed steps, after one warm-up step; the one-time
decoding/caching cost is reported separately. The GPU part (production RN50, bf16, batch 256) runs only
where CUDA is available.

    python bench/clip_train.py [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BATCH = 16


def _setup():
    import torch

    from reprolab.clip.data import read_pairs
    from reprolab.clip.experiment import TrainClipConfig
    from reprolab.clip.model import build_model, image_transform, tokenizer_for
    from reprolab.clip.train import seed_everything
    from reprolab.config import load_section

    cfg = load_section("train_clip", TrainClipConfig, REPO / "params.yaml")
    seed_everything(0, cfg.train.threads)
    model, model_cfg, preprocess = build_model(cfg.model)
    records = read_pairs(REPO / "splits" / cfg.dataset / "train.jsonl")
    return torch, cfg, model, image_transform(preprocess), tokenizer_for(model_cfg), records


def run_notebook(steps: int) -> dict:
    torch, cfg, model, transform, tokenizer, records = _setup()
    from open_clip.loss import ClipLoss
    from PIL import Image

    loss_fn = ClipLoss()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.train.lr, total_steps=steps + 1)
    corpus = REPO / "corpus"
    model.train()
    timings = []
    for step in range(steps + 1):
        batch = records[step * BATCH : (step + 1) * BATCH]
        start = time.perf_counter()
        images = torch.stack([transform(Image.open(corpus / r["image"]).convert("RGB")) for r in batch])
        texts = tokenizer([r["text"] for r in batch])
        image_features, text_features, logit_scale = model(images, texts)
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        timings.append(time.perf_counter() - start)
    return {"setup_s": 0.0, "step_s": timings[1:]}


def run_stage(steps: int, use_split: bool) -> dict:
    torch, cfg, model, transform, tokenizer, records = _setup()
    from reprolab.clip.data import build_pairs
    from reprolab.clip.features import at_cut, tower_split, whole_model
    from reprolab.clip.train import adamw, train

    cpu = torch.device("cpu")
    start = time.perf_counter()
    pairs = build_pairs(records[: (steps + 1) * BATCH], REPO / "corpus", transform, tokenizer,
                        cfg.train.loader_workers)
    split = tower_split(model) if use_split else None
    towers, cached = at_cut(model, split, pairs, cpu, flips=cfg.train.hflip) if split else whole_model(model, pairs)
    setup_s = time.perf_counter() - start

    # time the stage's own loop: one epoch of `train` over exactly steps+1 batches, clocked at each
    # optimizer step (the gap between two steps is one whole step: data, forward, loss, backward, update)
    optimizer = adamw([(list(towers.parameters()), cfg.train.lr)], cfg.train.weight_decay)
    stamps: list[float] = []
    optimizer.register_step_post_hook(lambda *_: stamps.append(time.perf_counter()))
    tcfg = cfg.train.model_copy(update={"batch_size": BATCH})
    train("bench", model, towers, cached, cached, optimizer, 1, tcfg, cpu, augment=True)
    return {"setup_s": setup_s, "step_s": [b - a for a, b in zip(stamps, stamps[1:])]}


def run_gpu(steps: int) -> dict:
    import torch

    from reprolab.clip.features import whole_model_towers
    from reprolab.clip.model import ClipModelConfig, build_model
    from reprolab.clip.train import Ranks, clip_loss

    model, _, _ = build_model(ClipModelConfig(name="RN50", pretrained=None, lock_image=False))
    model = model.cuda().train()
    towers = whole_model_towers(model)
    loss_fn = clip_loss(Ranks())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    images = torch.randn(256, 3, 224, 224, device="cuda")
    texts = torch.randint(1, 49000, (256, 77), device="cuda")
    timings = []
    for _ in range(steps + 2):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            image_features, text_features, logit_scale = towers(images, texts)
            loss = loss_fn(image_features.float(), text_features.float(), logit_scale.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize()
        timings.append(time.perf_counter() - t)
    return {"setup_s": 0.0, "step_s": timings[2:], "batch": 256,
            "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20,
            "device_name": torch.cuda.get_device_name()}


def child(kind: str, steps: int) -> None:
    result = {"notebook": run_notebook, "cached_pixels": lambda s: run_stage(s, False),
              "stage": lambda s: run_stage(s, True), "gpu": run_gpu}[kind](steps)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def measure(kind: str, steps: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--steps", str(steps)],
                          capture_output=True, text=True, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps)
        return
    rows = {kind: measure(kind, args.steps) for kind in ("notebook", "cached_pixels", "stage")}
    base = BATCH * len(rows["notebook"]["step_s"]) / sum(rows["notebook"]["step_s"])
    print(f"\nCLIP training loop, CPU, batch {BATCH}, {args.steps} timed steps each (1 warm-up), "
          f"torch threads from params")
    print(f"{'loop':15s} {'images/s':>9s} {'ratio':>7s} {'peak RSS MiB':>13s} {'one-time cache s':>17s}")
    for kind, r in rows.items():
        ips = BATCH * len(r["step_s"]) / sum(r["step_s"])
        print(f"{kind:15s} {ips:9.1f} {ips / base:6.2f}x {r['peak_rss_mib']:13.0f} {r['setup_s']:17.1f}")
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        print("\nGPU part (production RN50, bf16, batch 256): skipped, no CUDA device on this machine.")
        return
    g = measure("gpu", args.steps)
    ips = g["batch"] * len(g["step_s"]) / sum(g["step_s"])
    # RN50 CLIP training ~ 3 x forward FLOPs; forward ~ 5.4 GFLOPs/image (visual) + ~3 GFLOPs/text (77 tok)
    flops_per_pair = 3 * (5.4e9 + 2.9e9)
    print(f"\nGPU {g['device_name']}: RN50 bf16 batch 256: {ips:.0f} images/s, "
          f"{ips * flops_per_pair / 1e12:.0f} TFLOP/s achieved (compare with the device's bf16 dense peak), "
          f"peak {g['peak_gpu_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
