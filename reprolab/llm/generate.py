"""Batched greedy generation, optionally constrained to a JSON schema, optionally reusing a shared-prefix KV cache.

Every prompt style is decoded the same way (greedy, same max_new_tokens, same stop token), so the rows of the
evaluation differ only in prompt and weights.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from transformers import DynamicCache, StaticCache, StoppingCriteria, StoppingCriteriaList

from reprolab.llm.constrained import SchemaConstraint, enforcer_tokenizer_data
from reprolab.llm.schema import first_json_object

log = logging.getLogger(__name__)


@dataclass
class Generation:
    texts: list[str]
    prompt_tokens: list[int]
    seconds: float
    new_tokens: int = 0
    prefix_cache_hits: int = 0
    stats: dict = field(default_factory=dict)


class StopAfterJsonObject(StoppingCriteria):
    """Per row: done once the generated text holds one complete top-level JSON object.

    The same rule for every row of the evaluation: a baseline that would ramble on after its object is cut
    there (a stronger baseline, and fewer wasted decode steps); a fine-tuned model stops at EOS anyway.
    """

    def __init__(self, tokenizer, prompt_len: int):
        self.tokenizer, self.prompt_len = tokenizer, prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        done = [first_json_object(t) is not None for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class PrefixCache:
    """KV cache of the token prefix shared by every prompt (the zero-shot ontology), computed once."""

    def __init__(self, model, tokenizer, prefix_text: str):
        self.ids = tokenizer(prefix_text, add_special_tokens=False, return_tensors="pt").input_ids.to(model.device)
        with torch.no_grad():
            self.cache = model(input_ids=self.ids, use_cache=True).past_key_values

    def matches(self, ids: list[int]) -> bool:
        n = self.ids.shape[1]
        return len(ids) > n and ids[:n] == self.ids[0].tolist()

    def for_batch(self, model, batch: int, max_cache_len: int):
        """A cache for `batch` rows whose first positions already hold the prefix (see `static_cache`)."""
        if not static_ok(model):
            cache = copy.deepcopy(self.cache)
            cache.batch_repeat_interleave(batch)
            return cache
        n = self.ids.shape[1]
        cache = StaticCache(config=model.config, max_cache_len=max_cache_len)
        for layer, source in zip(cache.layers, self.cache.layers, strict=True):
            keys, values = source.keys.expand(batch, -1, -1, -1), source.values.expand(batch, -1, -1, -1)
            layer.lazy_initialization(keys, values)
            layer.keys[:, :, :n] = keys
            layer.values[:, :, :n] = values
            layer.cumulative_length.fill_(n)
        return cache


def static_ok(model) -> bool:
    """Under CPU autocast the keys' dtype changes between prefill and decode steps, which a static cache (one
    dtype, allocated up front) refuses: there the growing cache stays."""
    return not torch.is_autocast_enabled(model.device.type)


def static_cache(model, max_cache_len: int) -> StaticCache | DynamicCache:
    """A KV cache preallocated for prompt plus budget, written in place (where `static_ok`; else a growing one).

    transformers' default (dynamic) cache concatenates every layer's keys and values at each decode step: with
    the 1k-token zero-shot prompt that copy took 24.5 s of a 58 s batch of 24 on this CPU (cProfile); in place,
    the same batch took 29.6 s with the same outputs (docs/extraction.md, "Where the stage's time goes").
    """
    if static_ok(model):
        return StaticCache(config=model.config, max_cache_len=max_cache_len)
    return DynamicCache(config=model.config)


def _pad_left(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids, mask


def generate_batched(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int = 16,
    constraint_schema: dict | None = None,
    shared_prefix: str | None = None,
    progress: str | None = None,
    chunk_tokens: int = 24,
) -> Generation:
    """Greedy-decode each prompt (chat-formatted text); return the completions and prompt token counts.

    Prompts are sorted by length so a batch pads little; results come back in the input order. With
    `shared_prefix` (text every prompt starts with), that prefix runs once and its KV cache is copied into
    each batch; a prompt whose tokens do not start with the prefix's tokens is run whole. A batch decodes
    `chunk_tokens` at a time and drops its finished rows between chunks (`_decode`).
    """
    encoded = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    prefix = PrefixCache(model, tokenizer, shared_prefix) if shared_prefix else None
    tokenizer_data = enforcer_tokenizer_data(tokenizer) if constraint_schema is not None else None
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    texts: list[str] = [""] * len(prompts)
    new_tokens, hits, closed, early = 0, 0, 0, 0
    start = time.perf_counter()
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc=progress or "generate", disable=progress is None, leave=False):
        seqs = [encoded[i] for i in batch]
        kwargs: dict = {}
        use_prefix = prefix is not None and all(prefix.matches(s) for s in seqs)
        if use_prefix:
            n = prefix.ids.shape[1]
            suffix_ids, suffix_mask = _pad_left([s[n:] for s in seqs], tokenizer.pad_token_id)
            # Padding sits between prefix and suffix; the attention mask hides it and positions skip it.
            ids = torch.cat([prefix.ids.cpu().expand(len(seqs), -1), suffix_ids], dim=1)
            mask = torch.cat([torch.ones(len(seqs), n, dtype=torch.long), suffix_mask], dim=1)
            kwargs["past_key_values"] = prefix.for_batch(model, len(seqs), ids.shape[1] + max_new_tokens)
            hits += len(seqs)
        else:
            ids, mask = _pad_left(seqs, tokenizer.pad_token_id)
            kwargs["past_key_values"] = static_cache(model, ids.shape[1] + max_new_tokens)
        constraint = None
        if constraint_schema is not None:
            # A fresh enforcer per batch: its state is keyed by token sequence, and fresh keeps memory flat.
            constraint = SchemaConstraint(tokenizer_data, constraint_schema, max_new_tokens)
            kwargs["prefix_allowed_tokens_fn"] = constraint
        gen, dropped = _decode(model, tokenizer, ids, mask, kwargs, max_new_tokens, chunk_tokens)
        early += dropped
        for row, i in enumerate(batch):
            toks = gen[row]
            stop = _ended(tokenizer, toks)
            length = int(stop.nonzero()[0, 0]) if stop.any() else len(toks)
            new_tokens += length
            text = tokenizer.decode(toks[:length], skip_special_tokens=True)
            obj = first_json_object(text)
            # Text after the first object's closing brace was generated in the same step (a multi-char token).
            if obj:
                texts[i] = text[: text.index(obj) + len(obj)]
            elif constraint is not None:
                # The budget cut a valid prefix: finish it with the shortest schema-legal suffix (forced text,
                # no model call), so every constrained output parses and validates.
                texts[i] = constraint.finish(text)
                closed += 1
            else:
                texts[i] = text
    seconds = time.perf_counter() - start
    if closed:
        log.info("constrained outputs closed after the token budget", extra={"closed": closed, "n": len(prompts)})
    return Generation(texts, [len(e) for e in encoded], seconds, new_tokens, hits,
                      {"closed_by_budget": closed, "rows_dropped_early": early})


def _ended(tokenizer, toks: torch.Tensor) -> torch.Tensor:
    """Where generated tokens are EOS or padding (`generate` pads a row after it stops)."""
    return (toks == tokenizer.eos_token_id) | (toks == tokenizer.pad_token_id)


def _decode(model, tokenizer, ids: torch.Tensor, mask: torch.Tensor, kwargs: dict, max_new_tokens: int,
            chunk_tokens: int) -> tuple[torch.Tensor, int]:
    """Greedy-decode one batch `chunk_tokens` at a time, dropping finished rows from the batch and its cache.

    `generate` keeps computing a finished row (as padding) until the last row stops: on the few-shot row one
    message that rambles to the budget made a batch of 24 run 96 steps where the mean completion was 53 tokens.
    Between chunks the finished rows leave, and `generate` continues the others from their cache (it runs only
    the tokens the cache lacks). Each row's tokens are the same greedy choices. Returns the generated tokens,
    padded, in the batch's row order, and how many rows left before the last chunk.
    """
    prompt_len = ids.shape[1]
    cache = kwargs["past_key_values"]
    json_done = StopAfterJsonObject(tokenizer, prompt_len)
    stop = StoppingCriteriaList([json_done])
    out = torch.full((ids.shape[0], max_new_tokens), tokenizer.pad_token_id, dtype=torch.long)
    active = torch.arange(ids.shape[0])
    done_tokens, dropped = 0, 0
    while done_tokens < max_new_tokens and len(active):
        step = min(chunk_tokens, max_new_tokens - done_tokens)
        with torch.no_grad():
            seqs = model.generate(
                input_ids=ids.to(model.device), attention_mask=mask.to(model.device), max_new_tokens=step,
                do_sample=False, num_beams=1, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, stopping_criteria=stop, **kwargs,
            ).cpu()
        new = seqs[:, ids.shape[1]:]
        out[active, done_tokens : done_tokens + new.shape[1]] = new
        done_tokens += new.shape[1]
        # Finished: stopped (EOS, or padded after a stop) or holding one whole JSON object, the stopping rule.
        done = _ended(tokenizer, seqs[:, prompt_len:]).any(dim=1) | json_done(seqs, None)
        keep = (~done).nonzero().flatten().tolist()
        if len(keep) < len(active) and keep:
            dropped += len(active) - len(keep)
            index = torch.tensor(keep)
            for layer in cache.layers:
                layer.keys, layer.values = layer.keys.index_select(0, index), layer.values.index_select(0, index)
                layer.batch_size = len(keep)
        active, ids = active[keep], seqs[keep]
        mask = torch.cat([mask, torch.ones(mask.shape[0], new.shape[1], dtype=mask.dtype)], dim=1)[keep]
    return out, dropped


def generate_one_at_a_time(model, tokenizer, prompts: list[str], max_new_tokens: int) -> Generation:
    """The naive baseline for the benchmark: one `generate` call per prompt, no batching, no prefix cache
    (same stopping rule as the batched path)."""
    texts, lengths, new_tokens = [], [], 0
    start = time.perf_counter()
    for p in prompts:
        enc = tokenizer(p, add_special_tokens=False, return_tensors="pt").to(model.device)
        with torch.no_grad():
            out = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                stopping_criteria=StoppingCriteriaList([StopAfterJsonObject(tokenizer, enc.input_ids.shape[1])]),
            )
        toks = out[0, enc.input_ids.shape[1]:]
        new_tokens += int((toks != tokenizer.pad_token_id).sum())
        texts.append(tokenizer.decode(toks, skip_special_tokens=True))
        lengths.append(enc.input_ids.shape[1])
    return Generation(texts, lengths, time.perf_counter() - start, new_tokens)
