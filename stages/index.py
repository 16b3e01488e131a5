"""DVC stage `index`: the Qdrant collections the query service serves (index/), and the RAG evaluation."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from reprolab import cli
from reprolab.config import load_section
from reprolab.rag.build import IndexConfig, build, evaluate
from stages.common import CORPUS, REPORTS, SPLITS, write_json

INDEX = Path("index")
log = logging.getLogger("index")


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = load_section("index", IndexConfig)
    manifest = build(cfg, CORPUS, SPLITS, INDEX)
    write_json(INDEX / "manifest.json", manifest)
    metrics, rows = evaluate(cfg, CORPUS, INDEX)
    write_json(REPORTS / "rag" / "metrics.json", metrics)
    write_json(REPORTS / "rag" / "questions.json", rows)
    log.info("rag evaluation", extra={"retrieval": metrics["retrieval"], "answers": metrics["answers"]})
    print(f"retrieval {metrics['retrieval']}\nanswers   {metrics['answers']}")


if __name__ == "__main__":
    cli.run(main, "index")
