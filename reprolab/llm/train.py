"""Local fine-tuning: LoRA with peft + trl's SFTTrainer on prompt/completion pairs (loss on the completion only).

On CUDA with `quantize_4bit`, the base model loads in 4-bit nf4 with double quantisation and bf16 compute
(QLoRA); on CPU it is plain LoRA on float32 weights, under bf16 autocast with `cpu_bf16`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from reprolab.config import StrictConfig
from reprolab.data.atomic import write_json
from reprolab.errors import ModelError
from reprolab.llm import prompts
from reprolab.llm.model import load_chat_model
from reprolab.llm.schema import Ontology
from reprolab.llm.tasks import Example

log = logging.getLogger(__name__)


class LoraTrainConfig(StrictConfig):
    model: str = "smollm2-135m-instruct"
    device: str = "cpu"
    quantize_4bit: bool = False      # QLoRA; needs CUDA
    max_train_examples: int = 400    # a fixed, seeded subset of the train split (0 = all)
    max_steps: int = 120
    slot_example_fraction: float = 0.0  # >0: the max_steps*batch_size training examples hold this share with slots
    batch_size: int = 8
    learning_rate: float = 1e-3
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_top_layers: int = 0         # >0: adapt only the top N decoder layers (backward stops there: cheaper)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    max_length: int = 256
    gradient_checkpointing: bool = False
    # Each batch as one sequence of its examples with no padding (trl's padding-free collator; transformers masks
    # each example off from the others, from the position ids). Padded to its longest, a random batch of 8
    # banking examples is 31% padding (45% on top of its real tokens), computed through all 30 layers for nothing.
    padding_free: bool = False
    cpu_bf16: bool = False           # bf16 autocast on CPU too: ~1.5x faster steps on AVX512-BF16/AMX cores
    seed: int = 0
    threads: int = 2


@dataclass
class TrainResult:
    adapter_dir: Path
    losses: list[dict]          # [{"step", "loss"}] per optimizer step
    seconds: float
    train_tokens: int
    examples: int
    model: object = None        # the trained (peft) model in memory, for callers that evaluate at once

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.seconds if self.seconds else 0.0


def sft_rows(tokenizer, ontology: Ontology, examples: list[Example]) -> list[dict]:
    """Prompt/completion pairs: the chat-formatted prompt, and the JSON plus EOS."""
    return [
        {
            "prompt": prompts.chat_prompt(tokenizer, prompts.user_turn("finetuned", ontology, ex.text)),
            "completion": prompts.completion_text(tokenizer, ex),
        }
        for ex in examples
    ]


def pick_subset(examples: list[Example], n: int, seed: int) -> list[Example]:
    if n <= 0 or n >= len(examples):
        return list(examples)
    rng = random.Random(seed)
    return rng.sample(sorted(examples, key=lambda e: e.id), n)


def mix_slot_examples(examples: list[Example], n: int, fraction: float, seed: int) -> list[Example]:
    """A seeded sample of n examples of which `fraction` have slots (NLU++ banking: a third do), so a short
    run sees enough slot values to learn their normalised shapes."""
    if fraction <= 0 or n <= 0:
        return examples
    pool = sorted(examples, key=lambda e: e.id)
    with_slots = [e for e in pool if e.target.slots]
    without = [e for e in pool if not e.target.slots]
    k = min(len(with_slots), round(n * fraction))
    rng = random.Random(seed)
    picked = rng.sample(with_slots, k) + rng.sample(without, min(len(without), n - k))
    rng.shuffle(picked)
    return picked


def top_layers(model, n: int) -> list[int] | None:
    total = model.config.num_hidden_layers
    return None if n <= 0 or n >= total else list(range(total - n, total))


@contextlib.contextmanager
def completion_positions_only(device: str) -> Iterator[None]:
    """Let trl's fused LM head score only the completion positions on CPU, as it already does on CUDA.

    trl 1.16 projects every position (prompt and padding too) through the 49k-token head off Triton devices, to
    keep tile shapes fixed for compiled backends; eager CPU has no such need, and with completion-only loss two
    thirds of that work is thrown away (8 steps: 32.4 s -> 19.3 s, identical losses). Scoped to training.
    """
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton
    if device.startswith("cpu"):
        trl_utils._use_triton = lambda dev: dev.type == "cpu" or original(dev)
    try:
        yield
    finally:
        trl_utils._use_triton = original


def canonical_adapter_config(adapter_dir: Path) -> None:
    """Rewrite adapter_config.json with sorted keys and target modules, so a re-run writes the same bytes.

    peft keeps `target_modules` as a set, whose JSON order follows Python's per-process string hash seed: the
    weights were identical run to run, but the model directory's DVC hash was not.
    """
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    write_json(path, config)


# Keys `save_pretrained` copies from how the tokenizer was loaded, not from what it is: `local_files_only` follows
# HF_HUB_OFFLINE, so the adapter directory's bytes followed the caller's environment (issue 16).
LOAD_TIME_KEYS = ("local_files_only",)


def canonical_tokenizer_config(folder: Path) -> None:
    """Rewrite tokenizer_config.json without the load-time keys, sorted, so any environment writes the same bytes."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in LOAD_TIME_KEYS:
        config.pop(key, None)
    write_json(path, config)


def check_lengths(tokenizer, rows: list[dict], max_length: int) -> None:
    """Padding-free batches are not truncated (trl): refuse examples longer than `max_length` instead of training
    on them whole or, as padded batches do, on a JSON target cut off mid-object."""
    lengths = [len(tokenizer(r["prompt"] + r["completion"], add_special_tokens=False).input_ids) for r in rows]
    over = [n for n in lengths if n > max_length]
    if over:
        raise ModelError(f"{len(over)} of {len(rows)} training examples exceed max_length {max_length} tokens "
                         f"(longest {max(over)}): raise finetune_mistral.local.max_length")


def train_lora(cfg: LoraTrainConfig, ontology: Ontology, train: list[Example], out_dir: Path) -> TrainResult:
    """Fine-tune `cfg.model` with LoRA on `train`; save the adapter (and tokenizer) under out_dir/adapter."""
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    cuda = cfg.device.startswith("cuda")
    if cfg.quantize_4bit and not cuda:
        raise ModelError("quantize_4bit (QLoRA) needs device: cuda; use plain LoRA on CPU")
    torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    if not cuda:
        torch.use_deterministic_algorithms(True, warn_only=True)
    model, tokenizer = load_chat_model(cfg.model, device=cfg.device, quantize_4bit=cfg.quantize_4bit)
    if cfg.quantize_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    tokenizer.padding_side = "right"
    examples = pick_subset(train, cfg.max_train_examples, cfg.seed)
    examples = mix_slot_examples(examples, cfg.max_steps * cfg.batch_size, cfg.slot_example_fraction, cfg.seed)
    rows = sft_rows(tokenizer, ontology, examples)
    if cfg.padding_free:
        check_lengths(tokenizer, rows, cfg.max_length)
    dataset = Dataset.from_list(rows)
    args = SFTConfig(
        output_dir=str(out_dir / "trainer"),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=max(1, cfg.max_steps // 20),
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        max_length=None if cfg.padding_free else cfg.max_length,  # padding-free: check_lengths instead
        completion_only_loss=True,
        packing=False,
        padding_free=cfg.padding_free,
        bf16=cuda or cfg.cpu_bf16,
        use_cpu=not cuda,
        gradient_checkpointing=cfg.gradient_checkpointing,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    peft_config = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules), task_type="CAUSAL_LM",
        layers_to_transform=top_layers(model, cfg.lora_top_layers),
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )
    start = time.perf_counter()
    with completion_positions_only(cfg.device):
        trainer.train()
    seconds = time.perf_counter() - start
    history = trainer.state.log_history
    losses = [{"step": h["step"], "loss": round(h["loss"], 6)} for h in history if "loss" in h]
    tokens = max((int(h.get("num_tokens", 0)) for h in history), default=0)
    adapter_dir = out_dir / "adapter"
    trainer.model.save_pretrained(adapter_dir)
    canonical_adapter_config(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    canonical_tokenizer_config(adapter_dir)
    log.info(
        "lora trained",
        extra={"steps": len(losses), "seconds": round(seconds, 1), "tokens": tokens, "examples": len(examples)},
    )
    return TrainResult(adapter_dir, losses, seconds, tokens, len(examples), trainer.model)


def load_finetuned(base: str, adapter_dir: Path, device: str = "cpu", merge: bool = True):
    """The base model with the saved adapter applied (merged into the weights by default: faster to decode)."""
    from peft import PeftModel

    model, tokenizer = load_chat_model(base, device=device)
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    if merge:
        model = model.merge_and_unload()
    model.eval()
    return model, tokenizer
