"""Contrastive training of a CLIP model in two stages, with early stopping on validation recall.

1. heads: both towers frozen, only the linear projection heads (and the temperature) train, on tower
   features computed once. This is the "frozen towers + linear heads" reference.
2. fine-tune: the unlocked parts of the towers train too (by default the whole image tower; the text tower
   stays frozen, as in the notebook). A frozen text tower's features are computed once and reused.

Images are decoded and resized once (reprolab.clip.data); an epoch only indexes cached tensors.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from reprolab.clip.data import PairSet, caption_batches
from reprolab.config import StrictConfig
from reprolab.evaluation.retrieval import retrieval_metrics

log = logging.getLogger(__name__)

MAX_LOGIT_SCALE = math.log(100.0)  # as open_clip's training: temperature no lower than 0.01


class TrainConfig(StrictConfig):
    seed: int = 0
    threads: int = 2  # torch CPU threads (fixed, so float reductions are reproducible)
    loader_workers: int = 0  # processes that decode images (once, before training)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = 16
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


@dataclass
class TowerSplit:
    """A CLIP model cut where its frozen part ends: features of the frozen part are computed once.

    image_prefix: the frozen leading layers of the image tower; image_suffix: the rest (trainable layers,
    pooling, projection head). text_body: the text transformer + pooling; text_head: its projection.
    """

    image_prefix: torch.nn.Module
    image_suffix: torch.nn.Module
    text_body: Callable[[torch.Tensor], torch.Tensor]
    text_head: torch.nn.Module
    image_head: torch.nn.Module


class _ImageSuffix(torch.nn.Module):
    def __init__(self, layers: list[torch.nn.Module], trunk: torch.nn.Module, head: torch.nn.Module):
        super().__init__()
        self.layers, self.trunk_head, self.head = torch.nn.Sequential(*layers), trunk.forward_head, head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features, before the projection head."""
        return self.trunk_head(self.layers(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _trunk_layers(trunk: torch.nn.Module) -> list[torch.nn.Module] | None:
    """The EfficientNet-family trunk (timm) as the flat list of layers its forward_features runs."""
    if not all(hasattr(trunk, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "forward_head")):
        return None
    return [trunk.conv_stem, trunk.bn1, *[b for stage in trunk.blocks for b in stage], trunk.conv_head, trunk.bn2]


def tower_split(model: torch.nn.Module) -> TowerSplit | None:
    """Cut a timm EfficientNet + HF text model after its last frozen image layer; None for other
    architectures, which then train end to end."""
    visual, text = getattr(model, "visual", None), getattr(model, "text", None)
    if not (hasattr(visual, "trunk") and hasattr(visual, "head") and hasattr(text, "proj")
            and hasattr(text, "pooler")):
        return None
    layers = _trunk_layers(visual.trunk)
    if layers is None:
        return None
    trainable = [i for i, m in enumerate(layers) if any(p.requires_grad for p in m.parameters())]
    cut = trainable[0] if trainable else len(layers)

    def text_body(tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != text.config.pad_token_id).long()
        return text.pooler(text.transformer(input_ids=tokens, attention_mask=mask), mask)

    return TowerSplit(torch.nn.Sequential(*layers[:cut]), _ImageSuffix(layers[cut:], visual.trunk, visual.head),
                      text_body, text.proj, visual.head)


def resolve_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def autocast(device: torch.device):
    """bf16 autocast on GPU; plain fp32 on CPU (bf16 on CPU is slow and breaks bit-reproducibility)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def seed_everything(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


@torch.inference_mode()
def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device, batch: int = 32):
    with autocast(device):
        return torch.cat([fn(x[i : i + batch].to(device)).float() for i in range(0, len(x), batch)])


@dataclass
class CachedPairs:
    """A pair set with the frozen parts' outputs computed once: image prefix (and its mirror), text body."""

    pairs: PairSet
    prefix: torch.Tensor
    prefix_flipped: torch.Tensor | None
    text: torch.Tensor | None  # None when the text tower trains


def cache_features(model, split: TowerSplit, pairs: PairSet, device, flips: bool = False) -> CachedPairs:
    text_frozen = not any(p.requires_grad for n, p in model.text.named_parameters() if not n.startswith("proj."))
    model.eval()
    return CachedPairs(
        pairs,
        _batched(split.image_prefix, pairs.pixels, device),
        _batched(split.image_prefix, pairs.pixels.flip(-1), device) if flips else None,
        _batched(split.text_body, pairs.tokens, device) if text_frozen else None,
    )


def with_cached_captions(split: TowerSplit, cached: CachedPairs, pairs: PairSet, device) -> CachedPairs:
    """`cached` for a pair set with the same images and more captions: image outputs reused, captions encoded."""
    return CachedPairs(pairs, cached.prefix, cached.prefix_flipped,
                       None if cached.text is None else _batched(split.text_body, pairs.tokens, device))


@torch.inference_mode()
def embed(model: torch.nn.Module, pairs: PairSet, device) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised image and caption embeddings of a pair set through the whole model, in eval mode."""
    was_training = model.training
    model.eval()
    images = _batched(lambda x: model.encode_image(x, normalize=True), pairs.pixels, device)
    texts = _batched(lambda t: model.encode_text(t, normalize=True), pairs.tokens, device)
    model.train(was_training)
    return images.cpu().numpy(), texts.cpu().numpy()


def evaluate(model: torch.nn.Module, pairs: PairSet, device) -> dict[str, float]:
    images, texts = embed(model, pairs, device)
    return retrieval_metrics(images, texts, pairs.caption_image.numpy())


@torch.inference_mode()
def evaluate_cached(model, split: TowerSplit, cached: CachedPairs, device) -> dict[str, float]:
    """As `evaluate`, from the cached frozen-part outputs (same numbers up to float rounding)."""
    model.eval()
    with autocast(device):
        img = F.normalize(split.image_suffix(cached.prefix.to(device)).float(), dim=-1)
        txt = (split.text_head(cached.text.to(device)) if cached.text is not None
               else model.encode_text(cached.pairs.tokens.to(device))).float()
    txt = F.normalize(txt, dim=-1)
    return retrieval_metrics(img.cpu().numpy(), txt.cpu().numpy(), cached.pairs.caption_image.numpy())


def validation_score(metrics: dict[str, float]) -> float:
    """Early-stopping criterion: mean recall@1/5/10 over both directions (smoother than R@5 alone)."""
    return float(np.mean([metrics[f"{d}_recall@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)]))


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of matching (image, caption) rows."""
    logits = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp() * image @ text.T
    labels = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def _optimizer(groups: list[tuple[list[torch.nn.Parameter], float]], cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms and the temperature (1-d parameters)."""
    param_groups = []
    for params, lr in groups:
        params = [p for p in params if p.requires_grad]
        param_groups.append({"params": [p for p in params if p.ndim >= 2], "lr": lr,
                             "weight_decay": cfg.weight_decay})
        param_groups.append({"params": [p for p in params if p.ndim < 2], "lr": lr, "weight_decay": 0.0})
    return torch.optim.AdamW([g for g in param_groups if g["params"]])


def _schedule(optimizer, total_steps: int, warmup_fraction: float):
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _fit(
    stage: str,
    model: torch.nn.Module,
    pairs: PairSet,
    epochs: int,
    optimizer,
    cfg: TrainConfig,
    batch_loss: Callable[[list[int], torch.Generator], torch.Tensor],
    validate: Callable[[], dict[str, float]],
    train_mode: bool = True,
) -> list[dict]:
    """The epoch loop shared by both stages: train, validate, keep the best state, stop early."""
    generator = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = len(caption_batches(pairs, cfg.batch_size, torch.Generator().manual_seed(cfg.seed)))
    scheduler = _schedule(optimizer, epochs * steps_per_epoch, cfg.warmup_fraction)
    best_score, best_state, stale, history = -1.0, None, 0, []
    for epoch in range(1, epochs + 1):
        model.train(train_mode)
        if not cfg.train_batchnorm:
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        losses = []
        batches = caption_batches(pairs, cfg.batch_size, generator)
        for batch in tqdm(batches, desc=f"{stage} epoch {epoch}", leave=False, disable=len(batches) < 20):
            loss = batch_loss(batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler.last_epoch < epochs * steps_per_epoch:
                scheduler.step()
            losses.append(loss.item())
        metrics = validate()
        score = validation_score(metrics)
        row = {"stage": stage, "epoch": epoch, "train_loss": float(np.mean(losses)), "val_score": score,
               "val_i2t_recall@5": metrics["i2t_recall@5"], "val_t2i_recall@5": metrics["t2i_recall@5"],
               "logit_scale": float(model.logit_scale.detach().exp())}
        history.append(row)
        log.info("epoch", extra=row)
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


def train_heads(model, split: TowerSplit, train: CachedPairs, val: CachedPairs, cfg: TrainConfig,
                device) -> list[dict]:
    """Stage 1: only the projection heads and the temperature train, on frozen features computed once."""
    seed_everything(cfg.seed, cfg.threads)
    model.eval()
    with torch.inference_mode(), autocast(device):
        train_img = split.image_suffix.features(train.prefix.to(device)).float()
        val_img = split.image_suffix.features(val.prefix.to(device)).float()
        train_txt, val_txt = (_batched(split.text_body, c.pairs.tokens, device) if c.text is None
                              else c.text.to(device) for c in (train, val))
    train_img, val_img, train_txt, val_txt = (t.clone() for t in (train_img, val_img, train_txt, val_txt))
    heads = [*split.image_head.parameters(), *split.text_head.parameters(), model.logit_scale]
    owner = train.pairs.caption_image

    def batch_loss(batch: list[int], _gen) -> torch.Tensor:
        img = F.normalize(split.image_head(train_img[owner[batch]]), dim=-1)
        txt = F.normalize(split.text_head(train_txt[batch]), dim=-1)
        return contrastive_loss(img, txt, model.logit_scale)

    @torch.inference_mode()
    def validate() -> dict[str, float]:
        img = F.normalize(split.image_head(val_img), dim=-1)
        txt = F.normalize(split.text_head(val_txt), dim=-1)
        return retrieval_metrics(img.cpu().numpy(), txt.cpu().numpy(), val.pairs.caption_image.numpy())

    optimizer = _optimizer([([p for p in heads if p.requires_grad], cfg.heads_lr)], cfg)
    return _fit("heads", model, train.pairs, cfg.heads_epochs, optimizer, cfg, batch_loss, validate,
                train_mode=False)


def _random_crop(x: torch.Tensor, min_share: float, gen: torch.Generator) -> torch.Tensor:
    """One random crop of a batch of feature maps (a random-resized-crop on cached activations)."""
    h, w = x.shape[-2:]
    side = int(torch.randint(max(1, round(min_share * h)), h + 1, (1,), generator=gen))
    top = int(torch.randint(0, h - side + 1, (1,), generator=gen))
    left = int(torch.randint(0, w - side + 1, (1,), generator=gen))
    return x[..., top : top + side, left : left + side]


def fine_tune(model, split: TowerSplit | None, train: CachedPairs | PairSet, val: CachedPairs | PairSet,
              cfg: TrainConfig, device) -> list[dict]:
    """Stage 2: every parameter the model config leaves unlocked trains.

    With a split, the frozen image layers and a frozen text tower run once (cached); without one (other
    architectures, e.g. production RN50) the whole model runs on the cached pixels every step.
    """
    seed_everything(cfg.seed + 1, cfg.threads)
    pairs = train.pairs if isinstance(train, CachedPairs) else train
    owner = pairs.caption_image
    head_params = {id(model.logit_scale)}
    if split is not None:
        head_params |= {id(p) for m in (split.image_head, split.text_head) for p in m.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer([([p for p in params if id(p) not in head_params], cfg.lr),
                            ([p for p in params if id(p) in head_params], cfg.head_lr)], cfg)

    def images(batch: list[int], gen: torch.Generator) -> torch.Tensor:
        flip = (torch.rand(len(batch), generator=gen) < 0.5) if cfg.hflip else torch.zeros(len(batch), dtype=bool)
        if split is None:
            pixels = pairs.pixels[owner[batch]]
            pixels = torch.where(flip[:, None, None, None], pixels.flip(-1), pixels)
            return model.encode_image(pixels.to(device), normalize=True)
        x = train.prefix[owner[batch]]
        if train.prefix_flipped is not None:
            x = torch.where(flip[:, None, None, None], train.prefix_flipped[owner[batch]], x)
        if cfg.feature_crop > 0:
            x = _random_crop(x, cfg.feature_crop, gen)
        return F.normalize(split.image_suffix(x.to(device)), dim=-1)

    def texts(batch: list[int]) -> torch.Tensor:
        if split is not None and train.text is not None:
            return F.normalize(split.text_head(train.text[batch].to(device)), dim=-1)
        return model.encode_text(pairs.tokens[batch].to(device), normalize=True)

    def batch_loss(batch: list[int], gen: torch.Generator) -> torch.Tensor:
        with autocast(device):
            return contrastive_loss(images(batch, gen).float(), texts(batch).float(), model.logit_scale)

    def validate() -> dict[str, float]:
        if split is None:
            return evaluate(model, val, device)
        return evaluate_cached(model, split, val, device)

    return _fit("finetune", model, pairs, cfg.epochs, optimizer, cfg, batch_loss, validate)
