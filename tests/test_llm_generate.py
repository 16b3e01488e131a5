"""Batched greedy decoding: the static prefix cache and the early exit of finished rows change no output."""

from __future__ import annotations

import pytest

from reprolab.llm import prompts
from reprolab.llm.generate import generate_batched
from reprolab.llm.schema import Extraction, Ontology, task_json_schema
from reprolab.llm.tasks import Example

ONTO = Ontology(intents={"card": "a card", "lost_stolen": "lost or stolen", "greet": "a greeting"},
                slots={"date": "a date"})
MESSAGES = ["I lost my card", "hello there", "my card was stolen on 1 May, please block it right now",
            "hi", "card question: can you send a new one to my home address?", "stolen!"]
SHOTS = [Example("s1", "I lost my card", Extraction(intents=["card", "lost_stolen"])),
         Example("s2", "hello", Extraction(intents=["greet"]))]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    from reprolab.llm.model import load_chat_model

    return load_chat_model()


@pytest.mark.parametrize("constrained", [False, True])
def test_chunked_decoding_with_the_prefix_cache_gives_the_plain_outputs(model_and_tokenizer, constrained):
    model, tokenizer = model_and_tokenizer
    texts = [prompts.chat_prompt(tokenizer, prompts.user_turn("few_shot", ONTO, m, SHOTS)) for m in MESSAGES]
    marker = "\u0000PREFIX-END\u0000"
    prefix = prompts.chat_prompt(tokenizer, prompts.shared_prefix("few_shot", ONTO) + marker).split(marker)[0]
    schema = task_json_schema(ONTO) if constrained else None
    budget = 40
    # One chunk of the whole budget, no prefix: plain `generate` on each left-padded batch.
    plain = generate_batched(model, tokenizer, texts, budget, batch_size=3, constraint_schema=schema,
                             chunk_tokens=budget)
    fast = generate_batched(model, tokenizer, texts, budget, batch_size=3, constraint_schema=schema,
                            shared_prefix=prefix, chunk_tokens=6)
    assert fast.prefix_cache_hits == len(MESSAGES) and plain.prefix_cache_hits == 0
    assert fast.texts == plain.texts
    assert fast.new_tokens == plain.new_tokens
    if constrained:
        # Rows finished at different lengths, so some left their batch before its last chunk.
        assert fast.stats["rows_dropped_early"] > 0, fast.stats
    assert plain.stats["rows_dropped_early"] == 0
