"""JSON-schema constrained decoding with lm-format-enforcer's core.

lm-format-enforcer's own transformers integration imports `transformers.tokenization_utils`, which
transformers 5 removed; the core (TokenEnforcer, JsonSchemaParser) is framework-free, so this module is the
few lines of glue that integration held: the vocabulary table and a `prefix_allowed_tokens_fn`.
"""

from __future__ import annotations

import re

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


# A number longer than this (digits, '.', sign, exponent) gets no more digits: a small model otherwise writes
# `10.000000...` until the token budget runs out.
MAX_NUMBER_CHARS = 12
NUMBER_TAIL = re.compile(r"-?[0-9][0-9.eE+-]*$")

# Preferred characters when closing an output the token budget cut: end containers, strings, then the
# shortest legal filler (an empty string, a zero) for required fields still missing.
CLOSING_ORDER = '}]":,0[{ '


def _scan(text: str, inside: bool, last: str) -> tuple[bool, str, bool]:
    """Continue a JSON scan over `text`: (inside a string?, last significant character outside strings,
    did a '}' or ']' follow a ',' directly?)."""
    dangling, escape = False, False
    for c in text:
        if inside:
            if escape:
                escape = False
            elif c == "\\":
                escape = True
            elif c == '"':
                inside, last = False, '"'
        elif c == '"':
            inside = True
        elif not c.isspace():
            dangling = dangling or (c in "}]" and last == ",")
            last = c
    return inside, last, dangling


def closing_suffix(prefix: str, schema: dict, limit: int = 2000) -> str:
    """The characters that turn `prefix` (a valid prefix under `schema`) into a complete, schema-valid object.

    Walks lm-format-enforcer's character parser from the prefix's state, always taking the allowed character
    that closes soonest (a quote inside a string; '}' / ']' / '"' / ':' / ',' / '0' outside; otherwise the
    first allowed character, which finishes an enum value or a required key). Every step is legal by the
    parser, so the result validates; `limit` only guards against a schema with unbounded required content.
    """
    parser = JsonSchemaParser(schema)
    for c in prefix:
        parser = parser.add_character(c)
    out = ""
    while not parser.can_end():
        allowed = parser.get_allowed_characters()
        if not allowed or len(out) > limit:
            raise ValueError(f"cannot close JSON prefix {prefix!r} (got {out!r})")
        order = '"' + CLOSING_ORDER if _scan(prefix + out, False, "")[0] else CLOSING_ORDER
        c = next((c for c in order if c in allowed), None) or sorted(allowed)[0]
        parser = parser.add_character(c)
        out += c
    return out


def drop_trailing_comma(text: str) -> str:
    """`text` without a ',' it ends on outside a string: lm-format-enforcer accepts '}' right after one
    (`{"a":"b",}`, invalid JSON), and in the intents array a closing value would repeat an intent."""
    inside, last, _ = _scan(text, False, "")
    stripped = text.rstrip()
    return stripped[:-1] if not inside and last == "," and stripped.endswith(",") else text


def intent_array_ok(text: str, intents: list[str]) -> bool:
    """False when the generated `text` repeats an intent, or has an open intent string whose every
    completion is already used (so the model cannot loop on one label: uniqueItems, enforced while decoding).
    True outside the intents array."""
    key = text.find('"intents"')
    if key < 0:
        return True
    bracket = text.find("[", key)
    if bracket < 0:
        return True
    region = text[bracket + 1:].split("]")[0]
    parts = region.split('"')
    strings = parts[1::2]
    quotes = len(parts) - 1
    partial = strings.pop() if quotes % 2 == 1 else None
    if len(set(strings)) != len(strings):
        return False
    if partial is None:  # after a ',' a new intent must follow: one must be left
        return "," not in parts[-1] or any(v not in strings for v in intents)
    return any(v.startswith(partial) and v not in strings for v in intents)


class SchemaConstraint:
    """prefix_allowed_tokens_fn for `generate`: the tokens that keep the output a prefix of valid JSON.

    On top of the schema (lm-format-enforcer), intents are unique: a token that would repeat an intent, or
    start a string only a used intent completes, is not allowed (unless nothing else is). The schema alone only
    guarantees a valid *prefix*: an output the token budget cuts is finished by `finish` with the shortest
    schema-legal suffix computed from the parser state (`closing_suffix`), so every output validates.
    """

    def __init__(self, data: TokenEnforcerTokenizerData, schema: dict, max_new_tokens: int | None = None):
        config = CharacterLevelParserConfig(max_consecutive_whitespaces=0, max_json_array_length=8)
        self.enforcer = TokenEnforcer(data, JsonSchemaParser(schema, config=config))
        self.schema, self.max_new_tokens, self.decode = schema, max_new_tokens, data.decoder
        self.intents = list(schema["properties"]["intents"]["items"].get("enum", []))
        self.text = {i: text for i, text, _ in data.regular_tokens}
        self.whitespace = {i for i, text, _ in data.regular_tokens if text and not text.strip()}
        self.closing = {i for i, text, _ in data.regular_tokens if "}" in text or "]" in text}
        self.digits = {i for i, text, _ in data.regular_tokens if text.strip().isdigit()}
        self.number_parts = {i for i, text, _ in data.regular_tokens if text[:1] and text[0] in "0123456789.eE+-"}
        self.start_len: int | None = None

    def __call__(self, batch_id: int, input_ids) -> list[int]:
        tokens = input_ids.tolist()
        if self.start_len is None:
            self.start_len = len(tokens)  # rows share one length (left padding): the first call is the prompt
        allowed = self.enforcer.get_allowed_tokens(tokens).allowed_tokens
        generated = self.decode(tokens[self.start_len:])
        if self.intents and '"slots"' not in generated:
            unique = [t for t in allowed if intent_array_ok(generated + self.text.get(t, ""), self.intents)]
            allowed = unique or allowed
        allowed = self._no_dangling_commas(generated, allowed)
        allowed = self._bounded_numbers(generated, allowed)
        # The parser ends a number only at whitespace; anywhere else whitespace just burns the token budget.
        in_number = any(t in self.digits for t in allowed) and tokens[-1] not in self.whitespace
        if in_number:
            return allowed
        return [t for t in allowed if t not in self.whitespace] or allowed

    def _bounded_numbers(self, generated: str, allowed: list[int]) -> list[int]:
        """No token that would lengthen a number already MAX_NUMBER_CHARS long (outside strings)."""
        tail = NUMBER_TAIL.search(generated)
        if tail is None or len(tail.group()) < MAX_NUMBER_CHARS or _scan(generated, False, "")[0]:
            return allowed
        return [t for t in allowed if t not in self.number_parts] or allowed

    def _no_dangling_commas(self, generated: str, allowed: list[int]) -> list[int]:
        """lm-format-enforcer lets '}' or ']' follow a ',' in an object with no required key left (invalid
        JSON: `{"slots":{"a":"b",}}`). Drop a token that would close right after a comma."""
        inside, last, _ = _scan(generated, False, "")
        keep = [t for t in allowed if t not in self.closing or not _scan(self.text[t], inside, last)[2]]
        return keep or allowed

    def finish(self, text: str) -> str:
        """`text` completed to a schema-valid object when the budget cut it (unchanged when already complete):
        a trailing ',' dropped, then the shortest schema-legal suffix appended."""
        if not closing_suffix(text, self.schema):
            return text
        text = drop_trailing_comma(text)
        return text + closing_suffix(text, self.schema)
