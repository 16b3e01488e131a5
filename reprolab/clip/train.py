"""Contrastive training of a CLIP model's trainable part, with early stopping on validation recall.

`train` is the whole loop, top to bottom: data, forward, loss (open_clip's ClipLoss), backward, step,
schedule (open_clip's warmup + cosine, from torch's schedulers), evaluate, log, keep the best. The stage runs it twice
(reprolab.clip.experiment): heads only on pooled frozen features (the reference row), then the unlocked
layers as well; the inputs come from the feature cache (reprolab.clip.features).

Data-parallel: started under `torchrun` (`join_torchrun` joins its process group), every rank builds the same global
batches (same seed), takes its contiguous share of each, and ClipLoss gathers the features of all ranks
(`gather_with_grad`, `local_loss`, as open_clip_train does) while DistributedDataParallel averages the
gradients: the update equals one process's on the full batch.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

from reprolab.clip.data import PairSet, caption_batches
from reprolab.clip.features import CachedInputs, Towers, autocast, batched
from reprolab.config import StrictConfig
from reprolab.evaluation.retrieval import retrieval_metrics

log = logging.getLogger(__name__)

MAX_LOGIT_SCALE = math.log(100.0)  # as open_clip's training: temperature no lower than 0.01


class TrainConfig(StrictConfig):
    seed: int = 0
    threads: int = 2  # torch CPU threads (fixed, so float reductions are reproducible)
    loader_workers: int = 0  # processes that decode images (once, before training)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = 16  # the global batch: split across ranks under torchrun
    heads_epochs: int = 40  # stage 1: projection heads on frozen tower features
    heads_lr: float = 1e-3
    epochs: int = 6  # stage 2: unlocked tower parts train as well
    lr: float = 1e-4  # unlocked tower parameters
    head_lr: float = 1e-4  # projection heads and temperature in stage 2
    weight_decay: float = 0.1
    warmup_fraction: float = 0.1
    patience: int = 3  # epochs without a better validation score before stopping
    hflip: bool = True  # random horizontal flips of the cached images in stage 2
    feature_crop: float = 0.0  # stage 2: random crops of the cached feature maps, down to this share of a side
    train_batchnorm: bool = False  # update BatchNorm statistics (noisy at small batch sizes) or keep them
    caption_views: int = 0  # stage 2: up to n sentence-level captions per description as extra training pairs


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run (rank 0 of 1 without a process group)."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> Ranks:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def share(self, batch: list[int]) -> list[int]:
        """This rank's contiguous share of a global batch (rows beyond a multiple of world_size dropped)."""
        n = len(batch) // self.world_size
        return batch[self.rank * n : (self.rank + 1) * n]


def join_torchrun(env: Mapping[str, str]) -> Ranks:
    """Join the process group `torchrun` describes in `env` (WORLD_SIZE > 1): NCCL with one GPU per process,
    gloo on CPU. A plain `python -m stages.train_clip` (no WORLD_SIZE) runs as rank 0 of 1."""
    if int(env.get("WORLD_SIZE", "1")) <= 1:
        return Ranks()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(env.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Ranks.current()


def resolve_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def seed_everything(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def adamw(groups: list[tuple[list[torch.nn.Parameter], float]], weight_decay: float) -> torch.optim.AdamW:
    """AdamW over (parameters, lr) groups; no weight decay on biases, norms and the temperature (1-d)."""
    param_groups = []
    for params, lr in groups:
        params = [p for p in params if p.requires_grad]
        param_groups.append({"params": [p for p in params if p.ndim >= 2], "lr": lr, "weight_decay": weight_decay})
        param_groups.append({"params": [p for p in params if p.ndim < 2], "lr": lr, "weight_decay": 0.0})
    return torch.optim.AdamW([g for g in param_groups if g["params"]])


@torch.inference_mode()
def encode(towers: Towers, inputs: CachedInputs, device) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised image and caption embeddings of the trainable part on cached inputs, in eval mode."""
    was_training = towers.training
    towers.eval()
    images = batched(lambda x: towers.image(x), inputs.images, device)
    texts = batched(lambda t: towers.text(t), inputs.texts, device)
    towers.train(was_training)
    return F.normalize(images, dim=-1).numpy(), F.normalize(texts, dim=-1).numpy()


def evaluate(towers: Towers, inputs: CachedInputs, device) -> dict[str, float]:
    """Retrieval metrics of the trainable part on cached inputs."""
    return retrieval_metrics(*encode(towers, inputs, device), inputs.pairs.caption_image.numpy())


@torch.inference_mode()
def embed(model: torch.nn.Module, pairs: PairSet, device) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised image and caption embeddings of a pair set through the whole model, in eval mode."""
    was_training = model.training
    model.eval()
    images = batched(lambda x: model.encode_image(x, normalize=True), pairs.pixels, device)
    texts = batched(lambda t: model.encode_text(t, normalize=True), pairs.tokens, device)
    model.train(was_training)
    return images.numpy(), texts.numpy()


def clip_loss(ranks: Ranks) -> ClipLoss:
    """open_clip's contrastive loss; across ranks each rank's rows against every rank's features, with
    gradients through the gather (open_clip_train's `--local-loss --gather-with-grad`)."""
    return ClipLoss(local_loss=True, gather_with_grad=True, rank=ranks.rank, world_size=ranks.world_size)


def validation_score(metrics: dict[str, float]) -> float:
    """Early-stopping criterion: mean recall@1/5/10 over both directions (smoother than R@5 alone)."""
    return float(np.mean([metrics[f"{d}_recall@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)]))


def _freeze_batchnorm(module: torch.nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> LRScheduler:
    """open_clip_train's `cosine_lr` from torch's schedulers (it keeps each param group's own lr): linear warmup
    from lr/warmup to lr over `warmup` steps, then cosine to 0 at `total`."""
    if warmup <= 1:
        return CosineAnnealingLR(optimizer, T_max=max(1, total))
    return SequentialLR(optimizer, [LinearLR(optimizer, 1 / warmup, 1.0, total_iters=warmup - 1),
                                    CosineAnnealingLR(optimizer, T_max=max(1, total - warmup))], milestones=[warmup])


def train(
    stage: str,
    model: torch.nn.Module,
    towers: Towers,
    train_set: CachedInputs,
    val_set: CachedInputs,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    cfg: TrainConfig,
    device,
    augment: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    ranks: Ranks | None = None,
) -> list[dict]:
    """Train `towers` (the trainable part of `model`) for up to `epochs`; `model` ends at its best
    validation score. Returns one log row per epoch (also handed to `on_epoch`)."""
    ranks = ranks or Ranks.current()
    loss_fn = clip_loss(ranks)
    net = DistributedDataParallel(towers) if ranks.world_size > 1 else towers
    generator = torch.Generator().manual_seed(cfg.seed)  # the same batches and augmentations on every rank
    steps_per_epoch = len(caption_batches(train_set.pairs, cfg.batch_size, torch.Generator().manual_seed(cfg.seed)))
    total_steps = epochs * steps_per_epoch
    scheduler = warmup_cosine(optimizer, int(total_steps * cfg.warmup_fraction), total_steps)
    best_score, best_state, stale, history = -1.0, None, 0, []
    for epoch in range(1, epochs + 1):
        towers.train()
        if not cfg.train_batchnorm:
            _freeze_batchnorm(towers)
        losses = []
        for batch in caption_batches(train_set.pairs, cfg.batch_size, generator):
            # data: the global batch's (augmented) inputs, then this rank's share of them
            images, texts = train_set.batch(batch, generator, hflip=augment and cfg.hflip,
                                            crop=cfg.feature_crop if augment else 0.0)
            mine = ranks.share(list(range(len(batch))))
            images, texts = images[mine].to(device), texts[mine].to(device)
            # forward + loss
            with autocast(device):
                image_features, text_features, logit_scale = net(images, texts)
                loss = loss_fn(image_features.float(), text_features.float(), logit_scale.float())
            # backward, step, schedule
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler.last_epoch < total_steps:  # a later epoch may pack duplicates into one batch more
                scheduler.step()
            with torch.no_grad():
                towers.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            if ranks.world_size > 1:  # log the full batch's loss: the mean of the ranks' local losses
                loss = loss.detach().clone()
                dist.all_reduce(loss)
                loss /= ranks.world_size
            losses.append(loss.item())
        # evaluate (every rank holds the same weights, so every rank reaches the same early-stop decision)
        metrics = evaluate(towers, val_set, device)
        score = validation_score(metrics)
        # log
        row = {"stage": stage, "epoch": epoch, "train_loss": float(np.mean(losses)), "val_score": score,
               "val_i2t_recall@5": metrics["i2t_recall@5"], "val_t2i_recall@5": metrics["t2i_recall@5"],
               "logit_scale": float(towers.logit_scale.detach().exp()), "lr": scheduler.get_last_lr()[0]}
        history.append(row)
        log.info("epoch", extra=row)
        if on_epoch is not None and ranks.rank == 0:
            on_epoch(row)
        # keep the best, stop early
        if score > best_score:
            best_score, stale = score, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= cfg.patience:
                log.info("early stop", extra={"stage": stage, "epoch": epoch, "best_val_score": best_score})
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
