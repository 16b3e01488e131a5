"""Model construction through open_clip's factory: the packaged towers, bad names/tags, production archs."""

from __future__ import annotations

import pytest
import torch

from reprolab.clip.model import (
    EMBEDDED_MODEL,
    PACKAGED_IMAGE_TOWERS,
    ClipModelConfig,
    build_model,
    model_config,
    verified_file,
)
from reprolab.errors import ModelError


@pytest.fixture(scope="module")
def embedded():
    torch.manual_seed(0)
    return build_model(ClipModelConfig())


def test_embedded_model_is_registered_with_open_clip():
    import open_clip

    cfg = model_config(EMBEDDED_MODEL)
    assert EMBEDDED_MODEL in open_clip.list_models()
    assert cfg["vision_cfg"]["timm_model_name"] == "tf_efficientnet_lite0"


def test_packaged_image_tower_matches_the_reference_implementation(embedded):
    """The timm trunk with mapped weights computes what the package's own EfficientNet computes."""
    from efficientnet_lite_pytorch import EfficientNet

    model, _, _ = embedded
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(PACKAGED_IMAGE_TOWERS[EMBEDDED_MODEL].path()))
    ref.eval()
    model.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.visual.trunk(x)
        theirs = ref.extract_features(x).mean((2, 3))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_default_locking_freezes_the_text_tower_only(embedded):
    model, _, _ = embedded
    assert not any(p.requires_grad for p in model.text.transformer.parameters())
    assert all(p.requires_grad for p in model.text.proj.parameters())
    assert all(p.requires_grad for p in model.visual.parameters())


def test_unlocked_groups_leave_only_the_last_image_layers_trainable():
    model, _, _ = build_model(ClipModelConfig(lock_image=True, image_unlocked_groups=1))
    trunk = model.visual.trunk
    # timm groups the head convolution with the last block: one group = blocks.6 + conv_head
    assert all(p.requires_grad for p in trunk.conv_head.parameters())
    assert all(p.requires_grad for p in trunk.blocks[6].parameters())
    assert not any(p.requires_grad for p in trunk.blocks[:6].parameters())
    assert not any(p.requires_grad for p in trunk.conv_stem.parameters())
    assert all(p.requires_grad for p in model.visual.head.parameters())


def test_tampered_weight_file_is_refused(tmp_path):
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"not the weights")
    with pytest.raises(ModelError, match="sha256"):
        verified_file(bad, PACKAGED_IMAGE_TOWERS[EMBEDDED_MODEL].sha256)


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ModelError, match="unknown CLIP model 'RN51'"):
        build_model(ClipModelConfig(name="RN51"))


def test_unknown_pretrained_tag_is_a_clear_error():
    with pytest.raises(ModelError, match="not a pretrained tag of 'RN50'.*cc12m"):
        build_model(ClipModelConfig(name="RN50", pretrained="imagenet-9000"))


@pytest.mark.slow
def test_pretrained_tag_not_available_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to find offline
    with pytest.raises(ModelError, match="cannot be had"):
        build_model(ClipModelConfig(name="RN50", pretrained="cc12m"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["RN50", "ViT-B-32"])
def test_production_architectures_build_without_weights(name):
    model, model_cfg, preprocess = build_model(ClipModelConfig(name=name, pretrained=None, lock_image=False))
    model.eval()
    with torch.no_grad():
        image = model.encode_image(torch.zeros(1, 3, 224, 224), normalize=True)
        text = model.encode_text(torch.zeros(1, 77, dtype=torch.long), normalize=True)
    assert image.shape == text.shape == (1, model_cfg["embed_dim"])
    assert not any(p.requires_grad for p in model.transformer.parameters())  # text tower locked by default
    assert preprocess["size"] in (224, [224, 224])
