"""The monthly batch job's outcome, pushed to a Prometheus Pushgateway (the job ends before any scrape).

    python -m reprolab.monitoring push-monthly --out .monthly --gate reports/gate.json --exit-code $rc

Reads what the monthly script left (`.monthly/outputs.env`, the gate verdict in reports/gate.json) and pushes,
under job="reprolab_monthly" and a `profile` grouping key, the metrics ops/prometheus/alerts.yml alerts on.
`pushadd` (HTTP POST) replaces only the metrics it sends: a failed run leaves the last success time in place,
which is what lets "no successful run for 35 days" fire. Without PUSHGATEWAY_URL nothing is pushed (said so).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from reprolab import cli
from reprolab.errors import ReprolabError

log = logging.getLogger(__name__)
JOB = "reprolab_monthly"
VERDICTS = ("pass", "warn", "fail")
# The names alerts.yml may use for the batch job; tests/test_ops_alerts.py checks the rules against them.
MONTHLY_METRICS = (
    "reprolab_monthly_last_run_timestamp_seconds",
    "reprolab_monthly_last_success_timestamp_seconds",
    "reprolab_monthly_run_failed",
    "reprolab_monthly_gate_verdict",
    "reprolab_monthly_drift_warnings",
    "reprolab_monthly_models_changed",
)


class MonitoringError(ReprolabError):
    """The Pushgateway could not be reached or refused the push."""


class PushSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    pushgateway_url: str | None = Field(None, description="e.g. http://pushgateway:9091; unset: no push")
    pushgateway_timeout_s: float = 10.0


@dataclass
class MonthlyOutcome:
    exit_code: int
    verdict: str = ""           # pass | warn | fail | "" (no report: the run failed before it)
    failed_step: str = ""
    changed: bool = False
    drift_warnings: int = 0
    finished_at: float = field(default_factory=time.time)

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.failed_step


def read_outcome(out_dir: Path, gate_path: Path, exit_code: int) -> MonthlyOutcome:
    """The outcome from the monthly script's files; files a failed run never wrote count as nothing known."""
    outputs = {}
    env_file = out_dir / "outputs.env"
    if env_file.is_file():
        for line in env_file.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                outputs[key.strip()] = value.strip()
    drift = 0
    if gate_path.is_file() and outputs.get("verdict"):
        gate = json.loads(gate_path.read_text(encoding="utf-8"))
        # The gate records a drift warning as a finding whose message starts with "drift:".
        drift = sum(str(f.get("message", "")).startswith("drift") for f in gate.get("findings", []))
    verdict = outputs.get("verdict", "")
    if verdict and verdict not in VERDICTS:
        raise MonitoringError(f"{env_file}: verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    return MonthlyOutcome(exit_code=exit_code, verdict=verdict, failed_step=outputs.get("failed_step", ""),
                          changed=outputs.get("changed") == "true", drift_warnings=drift)


def outcome_registry(outcome: MonthlyOutcome) -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge(MONTHLY_METRICS[0], "When the monthly job last ended (unix seconds)", registry=registry).set(
        outcome.finished_at)
    if outcome.succeeded:
        Gauge(MONTHLY_METRICS[1], "When the monthly job last ended without a failed step", registry=registry).set(
            outcome.finished_at)
    Gauge(MONTHLY_METRICS[2], "1 when the last monthly run failed (a step or the exit code)",
          registry=registry).set(0 if outcome.succeeded else 1)
    gate = Gauge(MONTHLY_METRICS[3], "The last monthly run's gate verdict (1 on the verdict it gave)", ("verdict",),
                 registry=registry)
    for verdict in VERDICTS:
        gate.labels(verdict).set(1 if outcome.verdict == verdict else 0)
    Gauge(MONTHLY_METRICS[4], "Drift warnings in the last monthly report", registry=registry).set(
        outcome.drift_warnings)
    Gauge(MONTHLY_METRICS[5], "1 when the last monthly run produced new models (a PR)", registry=registry).set(
        1 if outcome.changed else 0)
    return registry


def push_outcome(outcome: MonthlyOutcome, settings: PushSettings, profile: str) -> bool:
    """Push to the Pushgateway; False (and a log line) when PUSHGATEWAY_URL is unset."""
    if not settings.pushgateway_url:
        log.info("PUSHGATEWAY_URL is not set: the monthly outcome is not pushed")
        return False
    try:
        pushadd_to_gateway(settings.pushgateway_url, job=JOB, registry=outcome_registry(outcome),
                           grouping_key={"profile": profile}, timeout=settings.pushgateway_timeout_s)
    except OSError as e:  # URLError, HTTPError (the gateway said no), timeouts
        raise MonitoringError(f"pushing the monthly outcome to {settings.pushgateway_url} failed: {e}") from e
    log.info("monthly outcome pushed", extra={"pushgateway": settings.pushgateway_url, "failed": not outcome.succeeded,
                                              "verdict": outcome.verdict})
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    push = sub.add_parser("push-monthly", help="push the monthly run's outcome to PUSHGATEWAY_URL")
    push.add_argument("--out", type=Path, default=Path(".monthly"), help="the monthly script's --out")
    push.add_argument("--gate", type=Path, default=Path("reports/gate.json"))
    push.add_argument("--exit-code", type=int, required=True, help="the monthly script's exit status")
    push.add_argument("--profile", default="embedded")
    args = parser.parse_args()
    outcome = read_outcome(args.out, args.gate, args.exit_code)
    pushed = push_outcome(outcome, PushSettings(), args.profile)
    print(f"monthly outcome: {'ok' if outcome.succeeded else 'failed'}, verdict {outcome.verdict or 'none'}, "
          f"drift warnings {outcome.drift_warnings} ({'pushed' if pushed else 'not pushed: no PUSHGATEWAY_URL'})")


if __name__ == "__main__":
    cli.run(main, "monitoring")
