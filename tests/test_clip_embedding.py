"""The embedding API's input errors: clear ModelErrors, never a traceback from deep inside torch or PIL."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reprolab.clip.embedding import ClipEmbedder
from reprolab.clip.model import ClipModelConfig, build_model, save_model_dir
from reprolab.errors import ModelError


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> ClipEmbedder:
    torch.manual_seed(0)
    model, model_cfg, preprocess = build_model(ClipModelConfig())
    out = tmp_path_factory.mktemp("clip")
    save_model_dir(model, model_cfg, preprocess, out, {})
    return ClipEmbedder.from_dir(out)


def test_image_that_fails_to_decode_is_named(embedder, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is no jpeg")
    with pytest.raises(ModelError, match="broken.jpg"):
        embedder.encode_images([broken])


def test_missing_image_is_named(embedder, tmp_path):
    with pytest.raises(ModelError, match="nowhere.png"):
        embedder.encode_images([tmp_path / "nowhere.png"])


def test_empty_text_list_is_refused(embedder):
    with pytest.raises(ModelError, match="empty"):
        embedder.encode_texts([])


def test_non_string_text_is_refused(embedder):
    with pytest.raises(ModelError, match="strings"):
        embedder.encode_texts(["fine", 3])


def test_pil_images_and_batching_give_the_same_rows(embedder):
    from PIL import Image

    images = [Image.new("RGB", (64, 48), c) for c in ("red", "blue", "green")]
    together = embedder.encode_images(images, batch_size=3)
    apart = embedder.encode_images(images, batch_size=1)
    assert together.shape == (3, embedder.dim) == (3, 256)
    torch.testing.assert_close(torch.from_numpy(together), torch.from_numpy(apart), rtol=1e-4, atol=1e-5)


def test_a_directory_without_a_model_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ModelError, match="not a CLIP model directory"):
        ClipEmbedder.from_dir(tmp_path)
