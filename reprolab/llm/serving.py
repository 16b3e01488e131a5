"""Input checks shared by the extraction CLI and service: what a batch of messages may be, with clear errors."""

from __future__ import annotations

import json

from reprolab.errors import ReprolabError

MAX_MESSAGE_CHARS = 2000      # the LLM design cuts longer messages; longer input is refused, not silently cut
MAX_BATCH = 256               # messages per request / per CLI call (memory and latency bound)
MAX_INPUT_BYTES = 4_000_000   # a JSONL input file


class ExtractInputError(ReprolabError):
    """Input the extractor refuses: the message names the line or item and what is wrong with it."""

    status = 422

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def check_texts(texts: list, max_batch: int = MAX_BATCH, max_chars: int = MAX_MESSAGE_CHARS,
                label: str = "message") -> list[str]:
    if not texts:
        raise ExtractInputError("no messages given: send at least one")
    if len(texts) > max_batch:
        raise ExtractInputError(f"{len(texts)} messages in one batch; the limit is {max_batch}", 413)
    for i, text in enumerate(texts, 1):
        if not isinstance(text, str):
            raise ExtractInputError(f"{label} {i}: text must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ExtractInputError(f"{label} {i}: text is empty")
        if len(text) > max_chars:
            raise ExtractInputError(f"{label} {i}: {len(text)} characters; the limit is {max_chars}", 413)
    return list(texts)


def parse_jsonl(data: bytes, max_bytes: int = MAX_INPUT_BYTES, max_batch: int = MAX_BATCH,
                max_chars: int = MAX_MESSAGE_CHARS) -> list[str]:
    """The texts of a JSON-lines input: one {"text": "..."} object per non-blank line."""
    if len(data) > max_bytes:
        raise ExtractInputError(f"input is {len(data)} bytes; the limit is {max_bytes}", 413)
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ExtractInputError(f"input is not UTF-8 (byte {e.start}, line {line})") from e
    texts = []
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ExtractInputError(f"line {number} is not JSON ({e.msg}): expected {{\"text\": ...}}") from e
        if not isinstance(obj, dict) or "text" not in obj:
            raise ExtractInputError(f"line {number} must be a JSON object with a \"text\" field")
        texts.append(obj["text"])
    if not texts:
        raise ExtractInputError("input is empty: expected one {\"text\": ...} object per line")
    return check_texts(texts, max_batch, max_chars, label="line")
