"""Image-caption pairs for CLIP training: read from the splits, decoded and resized ONCE into cached tensors.

Batches never hold two copies of one caption (or two captions of one image): the contrastive loss would
count them as negatives of each other, and recall stays flat (open_clip's R@k assumes one caption per image).
"""

from __future__ import annotations

import re
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from reprolab.clip.embedding import open_rgb
from reprolab.data.jsonl import read_jsonl
from reprolab.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass
class PairSet:
    """Cached pixels (one row per image), tokenised captions, and the image each caption describes."""

    image_ids: list[str]
    pixels: torch.Tensor  # (n_images, 3, H, W), preprocessed
    captions: list[str]
    tokens: torch.Tensor  # (n_captions, context_length)
    caption_image: torch.Tensor  # (n_captions,) index into image_ids

    def __len__(self) -> int:
        return len(self.captions)


def read_pairs(split_file: Path) -> list[dict]:
    """Records of one split file ({"id", "image", "text"} per line), sorted by id."""
    records = read_jsonl(split_file, missing="run `dvc repro split` first")
    for n, rec in enumerate(records, 1):
        if not {"id", "image", "text"} <= rec.keys():
            raise DatasetError(f"{split_file}: record {n} lacks one of id/image/text")
    if not records:
        raise DatasetError(f"{split_file} holds no records")
    return sorted(records, key=lambda r: r["id"])


class _Decode(Dataset):
    def __init__(self, paths: list[Path], transform):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(open_rgb(self.paths[i]))


def decode_images(paths: list[Path], transform, workers: int = 0, batch_size: int = 32) -> torch.Tensor:
    """Decode, resize and normalise every image once (in `workers` processes); (n, 3, H, W) float32."""
    loader = DataLoader(_Decode(paths, transform), batch_size=batch_size, num_workers=workers, shuffle=False)
    return torch.cat(list(loader))


def build_pairs(records: list[dict], corpus: Path, transform, tokenizer, workers: int = 0) -> PairSet:
    """Group records by image (several captions per image allowed) and cache pixels and tokens."""
    image_index: dict[str, int] = {}
    captions, owner = [], []
    for rec in records:
        idx = image_index.setdefault(rec["image"], len(image_index))
        captions.append(rec["text"])
        owner.append(idx)
    images = list(image_index)
    pixels = decode_images([corpus / p for p in images], transform, workers)
    return PairSet(images, pixels, captions, tokenizer(captions), torch.tensor(owner))


def caption_batches(pairs: PairSet, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffle caption indices into batches where no caption text and no image appears twice.

    Greedy: each caption goes into the first open batch free of its text and its image, so batches
    stay full except where duplicates force a new one.
    """
    order = torch.randperm(len(pairs), generator=generator).tolist()
    batches: list[list[int]] = []
    seen: list[tuple[set[str], set[int]]] = []
    for i in order:
        text, image = " ".join(pairs.captions[i].lower().split()), int(pairs.caption_image[i])
        for batch, (texts, images) in zip(batches, seen):
            if len(batch) < batch_size and text not in texts and image not in images:
                break
        else:
            batch, texts, images = [], set(), set()
            batches.append(batch)
            seen.append((texts, images))
        batch.append(i)
        texts.add(text)
        images.add(image)
    return [b for b in batches if len(b) > 1]  # a batch of one has no negatives


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def sentences(text: str, min_words: int = 3) -> list[str]:
    """The sentences of a description (split at . ! ? and line breaks), fragments under min_words dropped."""
    parts = [" ".join(p.split()) for p in _SENTENCE_END.split(text)]
    return [p for p in parts if len(p.split()) >= min_words]


def caption_views(text: str, max_views: int = 4, min_words: int = 3) -> list[str]:
    """Extra captions of one image from its long description: each sentence, then its tail without the first
    sentence (text a context-length cut hides), up to max_views, none equal to the full text."""
    full = " ".join(text.split())
    parts = sentences(text, min_words)
    views: list[str] = []
    if len(parts) > 2:
        views.append(" ".join(parts[1:]))
    views += parts
    out: list[str] = []
    for v in views:
        if v != full and v not in out:
            out.append(v)
    return out[:max_views]


def with_caption_views(pairs: PairSet, tokenizer, max_views: int = 4, min_words: int = 3) -> PairSet:
    """The pair set plus sentence-level captions of each caption's image (text-side augmentation for training;
    evaluation keeps the full descriptions). Pixels are shared, not copied."""
    captions, owner = list(pairs.captions), pairs.caption_image.tolist()
    extra, extra_owner = [], []
    for text, image in zip(pairs.captions, owner):
        views = caption_views(text, max_views, min_words)
        extra += views
        extra_owner += [image] * len(views)
    if not extra:
        return pairs
    return PairSet(pairs.image_ids, pairs.pixels, captions + extra,
                   torch.cat([pairs.tokens, tokenizer(extra)]), torch.tensor(owner + extra_owner))
