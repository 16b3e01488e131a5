"""Enforce the regression gate written by `make report`: on `fail`, notify (webhook, GitHub issue) and exit 2."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reprolab import cli
from reprolab.errors import ReprolabError
from reprolab.notify import NotifyError, NotifySettings, notify_failure
from stages.common import REPORTS


class GateFailed(ReprolabError):
    """The regression gate's verdict is fail."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--verdict", default=str(REPORTS / "gate.json"))
    args = parser.parse_args()
    path = Path(args.verdict)
    if not path.is_file():
        raise ReprolabError(f"{path} not found: run `make report` first")
    verdict = json.loads(path.read_text(encoding="utf-8"))
    failures = [f["message"] for f in verdict["findings"] if f["level"] == "fail"]
    print(f"gate: {verdict['status'].upper()} against {verdict['base'][:8]}")
    for f in verdict["findings"]:
        print(f"  {f['level']}: {f['message']}")
    if verdict["status"] != "fail":
        return
    body = "The regression gate failed against `{}`:\n{}".format(
        verdict["base"][:8], "\n".join(f"- {m}" for m in failures))
    try:
        sent = notify_failure(NotifySettings(), "reprolab: regression gate failed", body)
    except NotifyError as e:
        raise GateFailed(f"{len(failures)} metric(s) failed, and notifying failed too: {e}") from e
    raise GateFailed(f"{len(failures)} metric(s) failed the gate (notified: {', '.join(sent) or 'nobody'})")


if __name__ == "__main__":
    cli.run(main, "gate")
