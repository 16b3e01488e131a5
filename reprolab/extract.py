"""`python -m reprolab.extract --model DIR IN.jsonl OUT.jsonl`: run the extractor the stage wrote over a file.

IN: one {"text": ...} per line. OUT: one {"intents": [...], "slots": {...}, "confidence": p} per input line, in
order (confidence: the calibrated probability that the whole extraction is right; null for the LLM design).
The model's design and version go to stdout as one JSON line. Bad input ends with a clear error and exit
status 2; OUT is written to a temporary file and renamed, so it is never half-written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reprolab import cli
from reprolab.data.atomic import write_text
from reprolab.errors import ReprolabError
from reprolab.llm.serving import MAX_INPUT_BYTES, ExtractInputError, parse_jsonl


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reprolab.extract", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/llm"), help="model directory (models/llm)")
    parser.add_argument("--max-messages", type=int, default=10_000, help="refuse inputs with more lines")
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)

    def run() -> None:
        try:
            data = args.input.read_bytes()
        except OSError as e:
            raise ReprolabError(f"cannot read {args.input}: {e.strerror}") from e
        try:
            texts = parse_jsonl(data, max_bytes=MAX_INPUT_BYTES, max_batch=args.max_messages)
        except ExtractInputError as e:
            raise ExtractInputError(f"{args.input}: {e}") from e
        from reprolab.llm.system import load_served

        served = load_served(args.model)
        results = served.predict(texts)
        lines = [json.dumps({"intents": ex.intents, "slots": ex.slots, "confidence": conf},
                            ensure_ascii=False, sort_keys=True) + "\n" for ex, conf in results]
        write_text(args.output, "".join(lines))
        print(json.dumps({"design": served.design, "version": served.version, "messages": len(lines),
                          "output": str(args.output)}))

    cli.run(run, "extract")


if __name__ == "__main__":
    main(sys.argv[1:])
