"""The embedding API the index stage and the query service use: images and texts into one vector space."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from reprolab.clip.model import image_transform, load_model_dir, tokenizer_for
from reprolab.errors import ModelError


def open_rgb(image: Path | str | Image.Image) -> Image.Image:
    """Decode an image to RGB; a file that fails to decode is a ModelError that names it."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        with Image.open(image) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ModelError(f"image '{image}' cannot be decoded: {e}") from e


class ClipEmbedder:
    """A loaded CLIP model: `encode_images` and `encode_texts` give L2-normalised float32 rows of width `dim`."""

    def __init__(
        self, model: torch.nn.Module, tokenizer, preprocess_cfg: dict, embed_dim: int, info: dict | None = None
    ):
        self.model = model.eval()
        self._dim = int(embed_dim)
        self.tokenizer = tokenizer
        self.transform = image_transform(preprocess_cfg)
        self.info = info or {}
        self._device = next(model.parameters()).device

    @classmethod
    def from_dir(cls, model_dir: Path) -> ClipEmbedder:
        """Load a model directory written by the train_clip stage (models/clip)."""
        model, model_cfg, preprocess_cfg, info = load_model_dir(Path(model_dir))
        tokenizer = tokenizer_for(model_cfg, Path(model_dir))
        return cls(model, tokenizer, preprocess_cfg, model_cfg["embed_dim"], info)

    @property
    def dim(self) -> int:
        return self._dim

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Path | str | Image.Image], batch_size: int = 32) -> np.ndarray:
        if len(images) == 0:
            raise ModelError("encode_images got an empty list of images")
        out = []
        for start in range(0, len(images), batch_size):
            pixels = torch.stack([self.transform(open_rgb(im)) for im in images[start : start + batch_size]])
            out.append(self.model.encode_image(pixels.to(self._device), normalize=True).float().cpu())
        return torch.cat(out).numpy().astype(np.float32, copy=False)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if len(texts) == 0:
            raise ModelError("encode_texts got an empty list of texts")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ModelError(f"encode_texts needs strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start : start + batch_size]))
            out.append(self.model.encode_text(tokens.to(self._device), normalize=True).float().cpu())
        return torch.cat(out).numpy().astype(np.float32, copy=False)
