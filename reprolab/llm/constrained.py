"""JSON-schema constrained decoding with lm-format-enforcer's core.

lm-format-enforcer's own transformers integration imports `transformers.tokenization_utils`, which
transformers 5 removed; the core (TokenEnforcer, JsonSchemaParser) is framework-free, so this module is the
few lines of glue that integration held: the vocabulary table and a `prefix_allowed_tokens_fn`.
"""

from __future__ import annotations

from lmformatenforcer import CharacterLevelParserConfig, JsonSchemaParser
from lmformatenforcer.tokenenforcer import TokenEnforcer, TokenEnforcerTokenizerData


def enforcer_tokenizer_data(tokenizer) -> TokenEnforcerTokenizerData:
    """Each regular token's text, and whether it starts a word (decoded after a "0" to keep its leading space)."""
    vocab_size = len(tokenizer)
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(vocab_size) if i not in special]
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    alone = tokenizer.batch_decode([[i] for i in ids])
    after_zero = [s[1:] for s in tokenizer.batch_decode([[zero, i] for i in ids])]
    regular = [(i, a, len(a) > len(b)) for i, a, b in zip(ids, after_zero, alone, strict=True)]

    def decode(tokens: list[int]) -> str:
        return tokenizer.decode(tokens).rstrip("\ufffd")  # an incomplete UTF-8 tail is not text yet

    return TokenEnforcerTokenizerData(regular, decode, tokenizer.eos_token_id, False, vocab_size)


class SchemaConstraint:
    """prefix_allowed_tokens_fn for `generate`: the tokens that keep the output a prefix of valid JSON."""

    def __init__(self, data: TokenEnforcerTokenizerData, schema: dict):
        # Compact JSON (no whitespace at all), and arrays bounded so a small model cannot loop in one.
        config = CharacterLevelParserConfig(max_consecutive_whitespaces=0, max_json_array_length=8)
        self.enforcer = TokenEnforcer(data, JsonSchemaParser(schema, config=config))

    def __call__(self, batch_id: int, input_ids) -> list[int]:
        return self.enforcer.get_allowed_tokens(input_ids.tolist()).allowed_tokens
