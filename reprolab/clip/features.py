"""The feature cache: what the frozen parts of a CLIP model compute, computed once, and the trainable rest.

A CLIP model is cut where its frozen part ends. The frozen part's outputs (per image, plus its mirror image
for flips; per caption when the text tower is frozen) are cached once; a training step then runs only the
trainable part (`Towers`) on the cached inputs. Three cuts:

- `at_heads`:   frozen towers, only the projection heads train, on pooled tower features (the reference row)
- `at_cut`:     the unlocked image layers (timm EfficientNet blocks), the pooling and both heads train
- `whole_model`: architectures without a known cut (e.g. production RN50): the whole model runs on cached
                 pixels and tokens every step
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from reprolab.clip.data import PairSet


def autocast(device: torch.device):
    """bf16 autocast on GPU; fp32 on CPU. On CPU bf16 pays only with a bf16 hardware path (AVX512-BF16, AMX;
    llm/model.py `cpu_autocast`), which reprolab/determinism.py's AVX2 cap removes: there it runs slower than fp32
    (the extractor's `cpu_bf16` is off for that reason) and its results would depend on the host's ISA."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


class Towers(torch.nn.Module):
    """The trainable part of a CLIP model over cached inputs: image part, text part, temperature.

    forward returns what open_clip's ClipLoss takes: normalised image and text features and exp(logit_scale).
    logit_scale is the model's own parameter, so training this module trains the model.
    """

    def __init__(self, image: torch.nn.Module, text: torch.nn.Module, logit_scale: torch.nn.Parameter):
        super().__init__()
        self.image, self.text, self.logit_scale = image, text, logit_scale

    def forward(self, images: torch.Tensor, texts: torch.Tensor):
        return (F.normalize(self.image(images), dim=-1), F.normalize(self.text(texts), dim=-1),
                self.logit_scale.exp())


@dataclass
class CachedInputs:
    """A pair set as the trainable part reads it: one input row per image (and its mirror), one per caption."""

    pairs: PairSet  # captions and caption -> image owner, for batching and recall
    images: torch.Tensor
    images_flipped: torch.Tensor | None
    texts: torch.Tensor
    feature_maps: bool = False  # images are feature maps (an `at_cut` cache): random crops apply

    def batch(self, captions: list[int], generator: torch.Generator, hflip: bool = False,
              crop: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs of a batch of captions and their images, augmented: random flips per image, one random
        crop of the feature maps per batch (a random-resized-crop on cached activations)."""
        owner = self.pairs.caption_image[captions]
        images = self.images[owner]
        if hflip:
            flip = torch.rand(len(captions), generator=generator) < 0.5
            mirrored = self.images_flipped[owner] if self.images_flipped is not None else images.flip(-1)
            images = torch.where(flip[:, None, None, None], mirrored, images)
        if crop > 0 and self.feature_maps:
            images = _random_crop(images, crop, generator)
        return images, self.texts[captions]


def _random_crop(x: torch.Tensor, min_share: float, gen: torch.Generator) -> torch.Tensor:
    h, w = x.shape[-2:]
    side = int(torch.randint(max(1, round(min_share * h)), h + 1, (1,), generator=gen))
    top = int(torch.randint(0, h - side + 1, (1,), generator=gen))
    left = int(torch.randint(0, w - side + 1, (1,), generator=gen))
    return x[..., top : top + side, left : left + side]


@torch.inference_mode()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device, batch: int = 32) -> torch.Tensor:
    """fn over x in batches on `device`, back as a float32 CPU tensor (a cache entry)."""
    with autocast(device):
        return torch.cat([fn(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)])


class _ImageSuffix(torch.nn.Module):
    """The image tower after the cut: trainable trunk layers, pooling, projection head."""

    def __init__(self, layers: list[torch.nn.Module], trunk: torch.nn.Module, head: torch.nn.Module):
        super().__init__()
        self.layers, self.trunk_head, self.head = torch.nn.Sequential(*layers), trunk.forward_head, head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features, before the projection head."""
        return self.trunk_head(self.layers(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _TextBody(torch.nn.Module):
    """The HF text tower without its projection: transformer + pooling."""

    def __init__(self, text: torch.nn.Module):
        super().__init__()
        self.text = text

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != self.text.config.pad_token_id).long()
        return self.text.pooler(self.text.transformer(input_ids=tokens, attention_mask=mask), mask)


class _Encode(torch.nn.Module):
    """model.encode_image / encode_text as a module (architectures without a cut)."""

    def __init__(self, model: torch.nn.Module, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(x)


@dataclass
class TowerSplit:
    """A CLIP model cut where its frozen part ends (timm EfficientNet image tower + HF text tower)."""

    image_prefix: torch.nn.Module  # the frozen leading layers of the image tower
    image_suffix: _ImageSuffix
    text_body: _TextBody
    text_head: torch.nn.Module
    text_frozen: bool  # the text body has no trainable parameter: its outputs are cached


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
    text_frozen = not any(p.requires_grad for n, p in text.named_parameters() if not n.startswith("proj."))
    return TowerSplit(torch.nn.Sequential(*layers[:cut]), _ImageSuffix(layers[cut:], visual.trunk, visual.head),
                      _TextBody(text), text.proj, text_frozen)


def at_cut(model: torch.nn.Module, split: TowerSplit, pairs: PairSet, device,
           flips: bool = False) -> tuple[Towers, CachedInputs]:
    """Cache the frozen image layers' outputs (and of the mirrored images) and, if frozen, the text body's."""
    model.eval()
    cached = CachedInputs(
        pairs,
        batched(split.image_prefix, pairs.pixels, device),
        batched(split.image_prefix, pairs.pixels.flip(-1), device) if flips else None,
        batched(split.text_body, pairs.tokens, device) if split.text_frozen else pairs.tokens,
        feature_maps=True,
    )
    text = split.text_head if split.text_frozen else model.text
    return Towers(split.image_suffix, text, model.logit_scale), cached


def at_heads(model: torch.nn.Module, split: TowerSplit, cut: CachedInputs, device) -> tuple[Towers, CachedInputs]:
    """From an `at_cut` cache: pooled image features and text-body outputs; only the heads run on them."""
    model.eval()
    texts = cut.texts if split.text_frozen else batched(split.text_body, cut.pairs.tokens, device)
    cached = CachedInputs(cut.pairs, batched(split.image_suffix.features, cut.images, device), None, texts)
    return Towers(split.image_suffix.head, split.text_head, model.logit_scale), cached


def whole_model_towers(model: torch.nn.Module) -> Towers:
    """The whole model as the trainable part: pixels and tokens in."""
    return Towers(_Encode(model, "encode_image"), _Encode(model, "encode_text"), model.logit_scale)


def whole_model(model: torch.nn.Module, pairs: PairSet) -> tuple[Towers, CachedInputs]:
    """No cut: decoded pixels and tokens are the inputs, the whole model runs every step."""
    return whole_model_towers(model), CachedInputs(pairs, pairs.pixels, None, pairs.tokens)


def with_captions(split: TowerSplit | None, cached: CachedInputs, pairs: PairSet, device) -> CachedInputs:
    """`cached` for a pair set with the same images and more captions: image inputs reused, captions encoded."""
    texts = batched(split.text_body, pairs.tokens, device) if split is not None and split.text_frozen \
        else pairs.tokens
    return replace(cached, pairs=pairs, texts=texts)
