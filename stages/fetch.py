"""DVC stage `fetch`: validate the raw snapshot into the corpus; report data quality."""

from __future__ import annotations

from reprolab import cli
from reprolab.config import load_section
from reprolab.data.corpus import FetchConfig, build_corpus
from stages.common import CORPUS, REPORTS, SNAPSHOT, write_json


def main() -> None:
    cfg = load_section("fetch", FetchConfig)
    report = build_corpus(SNAPSHOT, CORPUS, cfg)
    write_json(REPORTS / "data_quality.json", report)
    for name, counts in report["datasets"].items():
        print(f"{name:6s} read {counts['read']:5d}  accepted {counts['accepted']:5d}  "
              f"quarantined {counts['quarantined']:3d}  duplicates {counts['duplicates']:3d}")


if __name__ == "__main__":
    cli.run(main, "fetch")
