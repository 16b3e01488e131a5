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


CLOSERS = set('"]}')


def closing_tokens(data: TokenEnforcerTokenizerData) -> set[int]:
    """Tokens made only of closing characters: what finishes an open string, array or object soonest."""
    ids = {i for i, text, _ in data.regular_tokens if text.strip() and set(text.strip()) <= CLOSERS}
    eos = data.eos_token_id if isinstance(data.eos_token_id, list) else [data.eos_token_id]
    return ids | set(eos)


class SchemaConstraint:
    """prefix_allowed_tokens_fn for `generate`: the tokens that keep the output a prefix of valid JSON.

    The schema only guarantees a valid *prefix*; an output cut by max_new_tokens is still broken. So in the
    last `closing_window` tokens of the budget, where the schema allows a closing token (or EOS), only those
    are allowed: an open number, string, array or object gets finished instead of cut.
    """

    def __init__(self, data: TokenEnforcerTokenizerData, schema: dict, max_new_tokens: int | None = None,
                 closing_window: int = 24, closers: set[int] | None = None):
        config = CharacterLevelParserConfig(max_consecutive_whitespaces=0, max_json_array_length=8)
        self.enforcer = TokenEnforcer(data, JsonSchemaParser(schema, config=config))
        self.max_new_tokens, self.window = max_new_tokens, closing_window
        self.closers = closers if closers is not None else closing_tokens(data)
        self.quotes = {i for i, text, _ in data.regular_tokens if text.strip() == '"'}
        self.spaces = {i for i, text, _ in data.regular_tokens if text == " "}
        self.whitespace = {i for i, text, _ in data.regular_tokens if text and not text.strip()}
        self.digits = {i for i, text, _ in data.regular_tokens if text.strip().isdigit()}
        self.start_len: int | None = None

    def __call__(self, batch_id: int, input_ids) -> list[int]:
        tokens = input_ids.tolist()
        if self.start_len is None:
            self.start_len = len(tokens)  # rows share one length (left padding): the first call is the prompt
        allowed = self.enforcer.get_allowed_tokens(tokens).allowed_tokens
        # The parser ends a number only at whitespace; anywhere else whitespace just burns the token budget.
        in_number = any(t in self.digits for t in allowed) and tokens[-1] not in self.whitespace
        compact = [t for t in allowed if t not in self.whitespace]
        if self.max_new_tokens is not None:
            left = self.max_new_tokens - (len(tokens) - self.start_len)
            if left <= self.window:
                # Brackets and EOS first; a lone quote may open a new string rather than close one.
                closing = [t for t in allowed if t in self.closers]
                strong = [t for t in closing if t not in self.quotes]
                quote = [t for t in closing if t in self.quotes]
                space = [t for t in allowed if t in self.spaces] if in_number else []
                preferred = strong or quote or space
                if preferred:
                    return preferred
        if in_number:
            return allowed
        return compact or allowed
