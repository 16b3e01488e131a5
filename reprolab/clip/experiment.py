"""One train_clip run: build, evaluate the untrained heads, train heads (reference), fine-tune, evaluate."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from reprolab.clip.data import PairSet, build_pairs, read_pairs, with_caption_views
from reprolab.clip.model import (
    PACKAGED_IMAGE_TOWERS,
    PACKAGED_TEXT_TOWERS,
    ClipModelConfig,
    build_model,
    image_transform,
    sha256_file,
    tokenizer_for,
)
from reprolab.clip.train import (
    TrainConfig,
    cache_features,
    evaluate,
    evaluate_cached,
    fine_tune,
    resolve_device,
    seed_everything,
    tower_split,
    train_heads,
    with_cached_captions,
)
from reprolab.config import StrictConfig
from reprolab.evaluation.retrieval import chance_recall

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "validation", "test")
REPORTED = ("i2t_recall@1", "i2t_recall@5", "i2t_recall@10", "t2i_recall@1", "t2i_recall@5", "t2i_recall@10",
            "i2t_median_rank", "t2i_median_rank", "i2t_mean_rank", "t2i_mean_rank")


class TrainClipConfig(StrictConfig):
    """params.yaml section `train_clip`."""

    dataset: str = "art"  # splits/<dataset>/{train,validation,test}.jsonl, images under corpus/
    model: ClipModelConfig = ClipModelConfig()
    train: TrainConfig = TrainConfig()


@dataclass
class ClipRun:
    model: torch.nn.Module
    model_cfg: dict
    preprocess_cfg: dict
    metrics: dict
    history: list[dict]
    info: dict


def _row(metrics: dict) -> dict:
    return {k: round(float(metrics[k]), 6) for k in REPORTED}


def load_pair_sets(cfg: TrainClipConfig, splits: Path, corpus: Path, transform, tokenizer) -> dict[str, PairSet]:
    return {name: build_pairs(read_pairs(splits / cfg.dataset / f"{name}.jsonl"), corpus, transform, tokenizer,
                              cfg.train.loader_workers)
            for name in SPLIT_NAMES}


def train_and_evaluate(cfg: TrainClipConfig, splits: Path, corpus: Path) -> ClipRun:
    started = time.perf_counter()
    device = resolve_device(cfg.train)
    seed_everything(cfg.train.seed, cfg.train.threads)  # the heads' initial weights come from this seed
    model, model_cfg, preprocess_cfg = build_model(cfg.model)
    model.to(device)
    tokenizer = tokenizer_for(model_cfg)
    sets = load_pair_sets(cfg, splits, corpus, image_transform(preprocess_cfg), tokenizer)
    log.info("data cached", extra={k: len(v.image_ids) for k, v in sets.items()}
             | {"seconds": round(time.perf_counter() - started, 1)})

    split = tower_split(model)
    metrics: dict = {}
    history: list[dict] = []
    if split is not None:
        cached = {name: cache_features(model, split, pairs, device, flips=name == "train" and cfg.train.hflip)
                  for name, pairs in sets.items()}
        metrics["baseline"] = _row(evaluate_cached(model, split, cached["test"], device))
        if cfg.train.heads_epochs > 0:
            history += train_heads(model, split, cached["train"],
                                   cached["validation"], cfg.train, device)
            metrics["reference"] = _row(evaluate_cached(model, split, cached["test"], device))
        train, val = cached["train"], cached["validation"]
    else:
        log.warning("no tower split for this architecture: no heads-only reference, end-to-end training",
                    extra={"model": cfg.model.name})
        metrics["baseline"] = _row(evaluate(model, sets["test"], device))
        train, val = sets["train"], sets["validation"]
    if cfg.train.caption_views > 0:
        # Text-side augmentation for fine-tuning only: the reference and all evaluations use full descriptions.
        augmented = with_caption_views(sets["train"], tokenizer, cfg.train.caption_views)
        log.info("caption views", extra={"train_captions": len(augmented), "train_images": len(sets["train"])})
        train = with_cached_captions(split, train, augmented, device) if split is not None else augmented
    if cfg.train.epochs > 0:
        history += fine_tune(model, split, train, val, cfg.train, device)
    # The reported numbers come through the whole model, as the saved directory will compute them.
    metrics["finetuned"] = _row(evaluate(model, sets["test"], device))
    n_test = len(sets["test"].image_ids)
    metrics["chance_recall@5"] = round(chance_recall(5, n_test), 6)
    metrics["chance_recall@1"] = round(chance_recall(1, n_test), 6)
    metrics["test_images"] = n_test
    for step, row in enumerate(history, 1):
        row["step"] = step
    info = {
        "model_name": cfg.model.name,
        "pretrained": cfg.model.pretrained,
        "tokenizer": type(tokenizer).__name__,
        "tower_weights_sha256": {
            "image": PACKAGED_IMAGE_TOWERS[cfg.model.name].sha256 if cfg.model.name in PACKAGED_IMAGE_TOWERS
            else None,
            "text": PACKAGED_TEXT_TOWERS[cfg.model.name].sha256 if cfg.model.name in PACKAGED_TEXT_TOWERS
            else None,
        },
        "data_manifest_sha256": sha256_file(corpus / "manifest.json") if (corpus / "manifest.json").is_file()
        else None,
        "dataset": cfg.dataset,
        "pairs": {k: len(v) for k, v in sets.items()},
        "config": cfg.model_dump(mode="json"),
        "epochs_run": {stage: sum(r["stage"] == stage for r in history) for stage in ("heads", "finetune")},
    }
    log.info("train_clip done", extra={"seconds": round(time.perf_counter() - started, 1),
                                       "finetuned_i2t_r5": metrics["finetuned"]["i2t_recall@5"],
                                       "finetuned_t2i_r5": metrics["finetuned"]["t2i_recall@5"]})
    return ClipRun(model, model_cfg, preprocess_cfg, metrics, history, info)
