"""Local fine-tuning: a few CPU LoRA steps on the packaged model; QLoRA on a Mistral-shaped model with a GPU."""

from __future__ import annotations

import pytest
import torch

from reprolab.llm.schema import Extraction, Ontology
from reprolab.llm.tasks import Example

ONTO = Ontology(intents={"card": "", "lost_stolen": "", "greet": ""}, slots={"date": ""})
EXAMPLES = [
    Example("a", "I lost my card", Extraction(intents=["card", "lost_stolen"])),
    Example("b", "hello there", Extraction(intents=["greet"])),
    Example("c", "my card was stolen on 1 May", Extraction(
        intents=["card", "lost_stolen"], slots={"date": {"day": 1, "month": 5, "year": 2022}})),
    Example("d", "hi, card question", Extraction(intents=["card", "greet"])),
]


def test_sft_rows_put_eos_in_the_completion_and_pad_differs():
    from reprolab.llm.model import load_chat_model
    from reprolab.llm.train import sft_rows

    _, tokenizer = load_chat_model()
    rows = sft_rows(tokenizer, ONTO, EXAMPLES)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert all(r["completion"].endswith(tokenizer.eos_token) for r in rows)
    assert rows[0]["prompt"].rstrip().endswith("assistant")  # generation prompt: the completion is the reply
    assert "system" not in rows[0]["prompt"].split("<|im_start|>user")[1]


@pytest.mark.slow
def test_cpu_lora_loss_falls_and_adapter_reloads_to_same_outputs(tmp_path):
    from reprolab.llm import prompts
    from reprolab.llm.train import LoraTrainConfig, load_finetuned, train_lora

    cfg = LoraTrainConfig(max_steps=8, batch_size=4, learning_rate=5e-3, lora_top_layers=4, max_length=128)
    result = train_lora(cfg, ONTO, EXAMPLES, tmp_path)
    losses = [step["loss"] for step in result.losses]
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < 0.7 * sum(losses[:2]) / 2, losses
    assert (result.adapter_dir / "adapter_config.json").is_file()

    reloaded, tokenizer = load_finetuned(cfg.model, result.adapter_dir, merge=False)
    prompt = prompts.chat_prompt(tokenizer, prompts.user_turn("finetuned", ONTO, "I lost my card"))
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    trained = result.model.eval()
    with torch.no_grad():
        a = trained(**ids).logits
        b = reloaded(**ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    greedy = {}
    for name, model in (("trained", trained), ("reloaded", reloaded)):
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        greedy[name] = tokenizer.decode(out[0, ids.input_ids.shape[1]:])
    assert greedy["trained"] == greedy["reloaded"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (QLoRA uses bitsandbytes 4-bit kernels)")
def test_qlora_on_a_mistral_shaped_model(tmp_path):
    """4-bit nf4 QLoRA vs bf16 LoRA on a randomly initialised Mistral (MistralConfig defaults = 7B shape)."""
    import time

    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, MistralConfig

    config = MistralConfig(num_hidden_layers=4)  # 7B width, fewer layers: minutes, not hours
    results = {}
    for mode in ("bf16_lora", "qlora_nf4"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.save_pretrained(tmp_path / "base")
        del model
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        kwargs = {}
        if mode == "qlora_nf4":
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(tmp_path / "base", dtype=torch.bfloat16,
                                                     device_map={"": 0}, **kwargs)
        if mode == "qlora_nf4":
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, task_type="CAUSAL_LM",
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        x = torch.randint(0, config.vocab_size, (4, 256), device="cuda")
        losses = []
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(10):
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        results[mode] = {"peak_gib": torch.cuda.max_memory_allocated() / 2**30,
                         "tokens_per_s": 10 * x.numel() / seconds, "losses": losses}
        assert losses[-1] < losses[0]
        del model, opt
        torch.cuda.empty_cache()
    print(results)
    assert results["qlora_nf4"]["peak_gib"] < results["bf16_lora"]["peak_gib"]


def test_mix_slot_examples_holds_the_requested_share_and_is_seeded():
    from reprolab.llm.train import mix_slot_examples

    pool = [Example(f"s{i}", "x", Extraction(slots={"date": {"day": 1, "month": 1, "year": 2022}})) for i in range(10)]
    pool += [Example(f"n{i}", "y", Extraction(intents=["greet"])) for i in range(30)]
    mixed = mix_slot_examples(pool, 16, 0.5, seed=0)
    assert len(mixed) == 16 and sum(bool(e.target.slots) for e in mixed) == 8
    assert [e.id for e in mixed] == [e.id for e in mix_slot_examples(list(reversed(pool)), 16, 0.5, seed=0)]
    assert mix_slot_examples(pool, 16, 0.0, seed=0) == pool   # off: unchanged


@pytest.mark.slow
def test_viggo_runs_through_the_same_stage_code(tmp_path, sample_data):
    """task: viggo selects the second dataset; the stage's run_local trains and scores all four rows on it."""
    from reprolab.llm.pipeline import ROWS, FinetuneMistralConfig, run_local
    from reprolab.llm.train import LoraTrainConfig

    corpus, splits = sample_data
    cfg = FinetuneMistralConfig(
        task="viggo", eval_examples=4, eval_batch_size=4, max_new_tokens=24, few_shot_k=1,
        local=LoraTrainConfig(max_steps=2, batch_size=2, max_train_examples=8, lora_top_layers=2, max_length=128,
                             cpu_bf16=True),  # the shipped precision path: bf16 autocast on CPU
    )
    result = run_local(cfg, splits, corpus, tmp_path)
    assert set(result.rows) == set(ROWS)
    assert all(row.metrics["n"] == 4 for row in result.rows.values())
    # ViGGO's dialogue acts are the intents; the constrained row is schema-valid by construction.
    assert result.rows["finetuned_constrained"].metrics["schema_valid_rate"] == 1.0
    assert result.model_card["task"] == "viggo" and result.model_card["domains"] == []
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    ids = {out["id"] for out in result.rows["finetuned"].outputs}
    assert all(i.startswith("viggo/") for i in ids), ids
    # seconds for timing.json only (issue 16): the stage's parts are timed, evaluation.json's extra holds none
    import json

    from reprolab.llm.pipeline import split_seconds

    assert {"train", "load_base", *ROWS} <= set(result.seconds)
    costs, seconds = split_seconds(result.extra["costs"])
    assert set(costs) == set(ROWS) and all(seconds[row]["cpu_seconds"] > 0 for row in ROWS)
    assert "second" not in json.dumps({**result.extra, "costs": costs})


def _fused_head_call(model, input_ids, labels):
    """Loss, gradient of the last layer and rows handed to trl's chunked log-prob kernel."""
    import trl.trainer.utils as trl_utils

    rows = []
    original_apply = trl_utils._ChunkedLogProbFunction.apply

    def counting_apply(hidden, *args):
        rows.append(hidden.shape[0])
        return original_apply(hidden, *args)

    model.zero_grad()
    trl_utils._ChunkedLogProbFunction.apply = counting_apply
    try:
        out = model(input_ids=input_ids, labels=labels, fused_lm_head=True)
    finally:
        trl_utils._ChunkedLogProbFunction.apply = original_apply
    out.loss.backward()
    return out.loss.item(), model.model.layers[-1].mlp.down_proj.weight.grad.clone(), rows


def test_completion_positions_only_scores_fewer_rows_with_the_same_loss_and_gradient():
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from reprolab.llm.train import completion_positions_only

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    add_fused_lm_head(model, outputs=("log_probs",))
    input_ids = torch.randint(0, 97, (2, 12))
    labels = input_ids.clone()
    labels[:, :9] = -100  # prompt positions: no loss
    full_loss, full_grad, full_rows = _fused_head_call(model, input_ids, labels)
    with completion_positions_only("cpu"):
        loss, grad, rows = _fused_head_call(model, input_ids, labels)
    assert full_rows == [2 * 11]            # every shifted position
    assert rows == [int((labels[:, 1:] != -100).sum())] == [6]  # only the completion positions
    assert loss == pytest.approx(full_loss, rel=1e-6)
    assert torch.allclose(grad, full_grad, atol=1e-6)
    # the patch is scoped: outside the block trl scores every position again
    assert _fused_head_call(model, input_ids, labels)[2] == full_rows


def test_adapter_config_is_written_the_same_whatever_the_set_order(tmp_path):
    """peft stores target_modules as a set; its JSON order must not change the model directory's hash."""
    import json

    from reprolab.llm.train import canonical_adapter_config

    written = []
    for order in (["q_proj", "k_proj", "o_proj"], ["o_proj", "q_proj", "k_proj"]):
        folder = tmp_path / "-".join(order)
        folder.mkdir()
        config = {"target_modules": order, "r": 16, "layers_to_transform": [29, 28]}
        (folder / "adapter_config.json").write_text(json.dumps(config, indent=4))
        canonical_adapter_config(folder)
        written.append((folder / "adapter_config.json").read_bytes())
    assert written[0] == written[1]
    reread = json.loads(written[0])
    assert reread["target_modules"] == ["k_proj", "o_proj", "q_proj"]
    assert reread["layers_to_transform"] == [29, 28]  # other lists keep their order


def test_tokenizer_config_is_written_the_same_online_or_offline(tmp_path):
    """Issue 16: transformers copies `local_files_only` (set from HF_HUB_OFFLINE) into tokenizer_config.json;
    the adapter directory must not depend on the caller's environment."""
    from transformers import AutoTokenizer

    from reprolab.llm.model import resolve_model_dir
    from reprolab.llm.train import canonical_tokenizer_config

    written = []
    for offline in (True, False):
        folder = tmp_path / f"offline-{offline}"
        tok = AutoTokenizer.from_pretrained(resolve_model_dir("smollm2-135m-instruct"), local_files_only=offline)
        tok.save_pretrained(folder)
        canonical_tokenizer_config(folder)
        written.append((folder / "tokenizer_config.json").read_bytes())
    assert written[0] == written[1]
    assert b"local_files_only" not in written[0]


@pytest.mark.slow
def test_padding_free_batches_train_the_padded_batches_losses(tmp_path):
    from reprolab.llm.train import LoraTrainConfig, train_lora

    common = dict(max_steps=3, batch_size=4, learning_rate=5e-3, lora_top_layers=2, max_length=128)
    padded = train_lora(LoraTrainConfig(**common), ONTO, EXAMPLES, tmp_path / "padded")
    free = train_lora(LoraTrainConfig(**common, padding_free=True), ONTO, EXAMPLES, tmp_path / "free")
    assert [s["loss"] for s in free.losses] == pytest.approx([s["loss"] for s in padded.losses], rel=1e-4)
    assert free.train_tokens == padded.train_tokens


def test_padding_free_refuses_an_example_longer_than_max_length(tmp_path):
    from reprolab.errors import ModelError
    from reprolab.llm.train import LoraTrainConfig, train_lora

    cfg = LoraTrainConfig(max_steps=1, batch_size=2, max_length=24, padding_free=True)
    with pytest.raises(ModelError, match=r"training examples exceed max_length 24 tokens \(longest \d+\)"):
        train_lora(cfg, ONTO, EXAMPLES, tmp_path)
    assert not (tmp_path / "adapter").exists()
