"""`make monthly`: one month of retraining, the same locally and in retrain.yml (logic: reprolab/monthly.py).

    python -m stages.monthly [--month YYYY-MM] [--profile embedded] [--base REV] [--out .monthly] [--no-push]
    python -m stages.monthly --notify-failure [--out .monthly]   # the workflow's `if: failure()` step

Not a DVC stage: it runs `dvc repro` itself. Exit 0 when the month's PR files are written (whatever the gate
said: `verdict` in .monthly/outputs.env), 2 when a step failed (named in the message and in failure.json).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from reprolab import cli
from reprolab.errors import ReprolabError
from reprolab.monthly import EMBEDDED, MonthlyConfig, failure_notice, run_month
from reprolab.notify import NotifyError, NotifySettings, notify_failure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--month", default=datetime.now(timezone.utc).strftime("%Y-%m"), help="YYYY-MM")
    parser.add_argument("--profile", default=EMBEDDED, help="params.<profile>.yaml applied in the job, never committed")
    parser.add_argument("--base", help="revision the report compares with (default: origin/<base branch>)")
    parser.add_argument("--base-branch", help="the PR's target (default: main; a profile's own branch otherwise)")
    parser.add_argument("--out", default=".monthly", help="where the PR files go")
    parser.add_argument("--no-push", action="store_true", help="do not `dvc push`")
    parser.add_argument("--notify-failure", action="store_true",
                        help="send the failure notification (webhook + GitHub issue) from what --out holds")
    args = parser.parse_args()
    if args.notify_failure:
        title, body = failure_notice(Path(args.out))
        try:
            sent = notify_failure(NotifySettings(), title, body)
        except NotifyError as e:
            raise ReprolabError(f"notifying failed: {e}") from e
        print(f"{title} (notified: {', '.join(sent) or 'nobody'})")
        return
    result = run_month(MonthlyConfig(month=args.month, profile=args.profile, base=args.base,
                                     base_branch=args.base_branch, out_dir=Path(args.out), push=not args.no_push))
    print((Path(args.out) / "summary.md").read_text(encoding="utf-8"))
    if result.changed:
        print(f"PR files in {args.out}/: branch {result.branch}, gate {result.verdict}")


if __name__ == "__main__":
    cli.run(main, "monthly")
