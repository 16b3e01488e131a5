"""DVC stage `split`: train/validation/test per dataset, by a hash of each record's stable id."""

from __future__ import annotations

import json
from reprolab import cli
from reprolab.config import load_section
from reprolab.data.corpus import DATASETS, read_records
from reprolab.data.split import SplitConfig, split_by_hash
from stages.common import CORPUS, SPLITS as OUT


def main() -> None:
    cfg = load_section("split", SplitConfig)
    for dataset in DATASETS:
        records = read_records(CORPUS, dataset)
        if not records or dataset == "docs":  # documents are indexed whole, not split
            continue
        parts = split_by_hash(records, cfg)
        (OUT / dataset).mkdir(parents=True, exist_ok=True)
        for name, part in parts.items():
            with open(OUT / dataset / f"{name}.jsonl", "w", encoding="utf-8") as f:
                for rec in part:
                    f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
        print(f"{dataset:6s} " + "  ".join(f"{k} {len(v):5d}" for k, v in parts.items()))


if __name__ == "__main__":
    cli.run(main, "split")
