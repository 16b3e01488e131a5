"""One train_clip run: build, evaluate the untrained heads, train heads (reference), fine-tune, evaluate."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
from reprolab.clip.features import at_cut, at_heads, tower_split, whole_model, with_captions
from reprolab.clip.train import TrainConfig, adamw, embed, encode, resolve_device, seed_everything, train
from reprolab.config import StrictConfig
from reprolab.evaluation.retrieval import chance_recall, retrieval_examples, retrieval_metrics

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
    metrics: dict  # per variant: recall@1/5/10, median and mean ranks; chance recall, test image count
    examples: list[dict]  # per test image and variant (reprolab.evaluation.retrieval.retrieval_examples)
    history: list[dict]
    info: dict


# DVCLive metric name -> field of a training log row (reprolab.clip.train.train); one TSV each, x = step.
LIVE_METRICS = {"train/loss": "train_loss", "val/score": "val_score", "val/i2t_recall@5": "val_i2t_recall@5",
                "val/t2i_recall@5": "val_t2i_recall@5", "logit_scale": "logit_scale", "lr": "lr"}


def live_logger(live) -> Callable[[dict], None]:
    """An `on_epoch` callback that logs a row to a dvclive.Live, one step per epoch of either stage."""

    def log_row(row: dict) -> None:
        for name, field in LIVE_METRICS.items():
            live.log_metric(name, round(float(row[field]), 6))  # 6 decimals: last-bit noise stays out of the log
        live.next_step()

    return log_row


def _row(metrics: dict) -> dict:
    return {k: round(float(metrics[k]), 6) for k in REPORTED}


def load_pair_sets(cfg: TrainClipConfig, splits: Path, corpus: Path, transform, tokenizer) -> dict[str, PairSet]:
    return {name: build_pairs(read_pairs(splits / cfg.dataset / f"{name}.jsonl"), corpus, transform, tokenizer,
                              cfg.train.loader_workers)
            for name in SPLIT_NAMES}


def train_and_evaluate(cfg: TrainClipConfig, splits: Path, corpus: Path,
                       on_epoch: Callable[[dict], None] | None = None) -> ClipRun:
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
    test: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # variant -> test image and caption embeddings
    history: list[dict] = []
    if split is not None:
        cut = {name: at_cut(model, split, pairs, device, flips=name == "train" and cfg.train.hflip)
               for name, pairs in sets.items()}
        towers = cut["train"][0]
        inputs = {name: cached for name, (_, cached) in cut.items()}
        test["baseline"] = encode(towers, inputs["test"], device)
        if cfg.train.heads_epochs > 0:
            # Stage 1, the reference: only the projection heads and the temperature train.
            heads = {name: at_heads(model, split, cached, device) for name, cached in inputs.items()}
            head_towers = heads["train"][0]
            seed_everything(cfg.train.seed, cfg.train.threads)
            optimizer = adamw([(list(head_towers.parameters()), cfg.train.heads_lr)], cfg.train.weight_decay)
            history += train("heads", model, head_towers, heads["train"][1], heads["validation"][1], optimizer,
                             cfg.train.heads_epochs, cfg.train, device, on_epoch=on_epoch)
            test["reference"] = encode(towers, inputs["test"], device)
    else:
        log.warning("no tower split for this architecture: no heads-only reference, end-to-end training",
                    extra={"model": cfg.model.name})
        towers, _ = whole_model(model, sets["train"])
        inputs = {name: whole_model(model, pairs)[1] for name, pairs in sets.items()}
        test["baseline"] = encode(towers, inputs["test"], device)
    if cfg.train.caption_views > 0:
        # Text-side augmentation for fine-tuning only: the reference and all evaluations use full descriptions.
        augmented = with_caption_views(sets["train"], tokenizer, cfg.train.caption_views)
        log.info("caption views", extra={"train_captions": len(augmented), "train_images": len(sets["train"])})
        inputs["train"] = with_captions(split, inputs["train"], augmented, device)
    if cfg.train.epochs > 0:
        # Stage 2: every parameter the model config leaves unlocked trains; heads at their own rate.
        heads_ids = {id(towers.logit_scale)}
        if split is not None:
            heads_ids |= {id(p) for m in (split.image_suffix.head, split.text_head) for p in m.parameters()}
        params = list(towers.parameters())
        seed_everything(cfg.train.seed + 1, cfg.train.threads)
        optimizer = adamw([([p for p in params if id(p) not in heads_ids], cfg.train.lr),
                           ([p for p in params if id(p) in heads_ids], cfg.train.head_lr)], cfg.train.weight_decay)
        history += train("finetune", model, towers, inputs["train"], inputs["validation"], optimizer,
                         cfg.train.epochs, cfg.train, device, augment=True, on_epoch=on_epoch)
    # The reported numbers come through the whole model, as the saved directory will compute them.
    test["finetuned"] = embed(model, sets["test"], device)
    owner = sets["test"].caption_image.numpy()
    metrics = {variant: _row(retrieval_metrics(*emb, owner)) for variant, emb in test.items()}
    image_names = [Path(p).name for p in sets["test"].image_ids]
    examples = [row for variant, emb in test.items() for row in retrieval_examples(variant, image_names, *emb, owner)]
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
        # The split files name each image of this dataset with its sha256 and caption. Not the corpus manifest:
        # it lists every dataset, so new messages alone would change this model directory (and re-run the stage).
        "data_splits_sha256": {name: sha256_file(splits / cfg.dataset / f"{name}.jsonl") for name in SPLIT_NAMES},
        "dataset": cfg.dataset,
        "pairs": {k: len(v) for k, v in sets.items()},
        "config": cfg.model_dump(mode="json"),
        "epochs_run": {stage: sum(r["stage"] == stage for r in history) for stage in ("heads", "finetune")},
    }
    log.info("train_clip done", extra={"seconds": round(time.perf_counter() - started, 1),
                                       "finetuned_i2t_r5": metrics["finetuned"]["i2t_recall@5"],
                                       "finetuned_t2i_r5": metrics["finetuned"]["t2i_recall@5"]})
    return ClipRun(model, model_cfg, preprocess_cfg, metrics, examples, history, info)
