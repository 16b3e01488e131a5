"""`make report`: the PR report (reports/pr_report.md) and the gate verdict (reports/gate.json) vs a base revision.

Not a DVC stage: its output depends on which revision it compares with. Always exits 0 when the report was
written, so CML can post a failing report; `python -m stages.gate` then fails the job and notifies.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reprolab import cli
from reprolab.config import load_section
from reprolab.evaluation.report import build_report
from reprolab.evaluation.summary import EvaluateConfig
from stages.common import REPORTS, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default=None, help="git revision to compare with (default: merge base / HEAD~1)")
    parser.add_argument("--out", default=str(REPORTS / "pr_report.md"))
    args = parser.parse_args()
    cfg = load_section("evaluate", EvaluateConfig)
    report = build_report(cfg, Path("."), args.base)
    Path(args.out).write_text(report.markdown, encoding="utf-8")
    write_json(REPORTS / "gate.json", {"base": report.base, **report.verdict.to_dict()})
    print(f"report: {args.out} against {report.base[:8]}; gate {report.verdict.status.upper()} "
          f"({len(report.verdict.findings)} findings)")


if __name__ == "__main__":
    cli.run(main, "report")
