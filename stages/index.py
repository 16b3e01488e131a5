"""DVC stage `index`: the collections the query service serves, exported (index/collections, loaded into Qdrant
by the services: reprolab.rag.portable), index/manifest.json that the services read their settings from, and
the RAG evaluation (reports/rag, evidence contract)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from reprolab import cli
from reprolab.config import load_section
from reprolab.evaluation.evidence import write_evaluation
from reprolab.evaluation.rag import RAG_SPECS, latency_p50
from reprolab.rag.build import IndexConfig, build, evaluate
from stages.common import CORPUS, REPORTS, SPLITS, write_json

INDEX = Path("index")
TIMING = REPORTS / "rag" / "timing.json"  # not a DVC output (.gitignore)
log = logging.getLogger("index")


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = load_section("index", IndexConfig)
    build(cfg, CORPUS, SPLITS, INDEX)  # index/manifest.json + index/collections/*.jsonl, swapped in whole
    rows, timings = evaluate(cfg, CORPUS, INDEX)
    headline = cfg.rag.answer.backend
    evaluation = write_evaluation(REPORTS / "rag", RAG_SPECS, rows, headline, extra={"served_backend": headline})
    # Timing differs on every run: a git-ignored file beside the DVC outputs, so those rebuild byte for byte.
    write_json(TIMING, {"latency_p50_ms": latency_p50(timings), "per_question": timings})
    for variant, metrics in sorted(evaluation["variants"].items()):
        figures = "  ".join(f"{k} {m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}] n={m['n']}"
                            for k, m in metrics.items())
        print(f"{variant:<22} {figures}")
    log.info("rag evaluation", extra={"headline": evaluation["variants"][headline]})


if __name__ == "__main__":
    cli.run(main, "index")
