"""The month, one step after another: snapshot, repro, push, report, gate verdict, and what the PR needs.

`python -m stages.monthly` (`make monthly`) runs it the same way on a laptop and in `retrain.yml`; the
workflow only adds credentials, the git push of the branch, the PR and its comment, and the notifications.

Each step is a subprocess whose output is echoed to the log as it runs. A step that fails raises
`MonthlyStepFailed` naming the step (the CLI prints it and exits 2) after writing `failure.json`, which the
workflow's failure step turns into a notification. The gate's verdict is recorded, never raised: the PR and
its report are written first, and the workflow fails the job on a `fail` verdict afterwards.

What lands in the output folder (`.monthly/` by default, ignored by git):
  result.json          everything below, machine-readable
  outputs.env          changed, branch, title, verdict, base_branch (key=value lines for $GITHUB_OUTPUT)
  summary.md           the job summary ($GITHUB_STEP_SUMMARY): changed or not, records added, warnings
  body.md, report.md   the PR body (a header + the report) and the report comment (reports/pr_report.md)
  commit_message.txt   the branch's commit message: no CI-skipping marker, CI must run on the PR
  files.txt            the paths the PR commits (never params.yaml: a profile is applied in the job only)
  failure.json         only when a step failed: which one, its exit status and the tail of its output
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reprolab.config import load_section
from reprolab.data.corpus import FetchConfig
from reprolab.errors import ConfigError, ReprolabError
from reprolab.profiles import UpstreamOverride, apply_profile, fallback_warning, is_samples, with_upstream

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
PR_PATHS = ("data.dvc", "dvc.lock", "reports")  # git-tracked results; data and models go to the DVC remote
REPORT = Path("reports/pr_report.md")
GATE = Path("reports/gate.json")
DATA_QUALITY = "reports/data_quality.json"
RAN = re.compile(r"^Running stage '([^']+)'", re.M)
TAIL_LINES = 40


class MonthlyStepFailed(ReprolabError):
    """A step of the monthly run failed; `step` names it."""

    def __init__(self, step: str, message: str):
        super().__init__(f"step '{step}' failed: {message}")
        self.step = step


@dataclass(frozen=True)
class MonthlyConfig:
    month: str                        # YYYY-MM: names the branch and the PR
    profile: str = EMBEDDED           # params.<profile>.yaml merged into params.yaml in the job, never committed
    base: str | None = None           # the revision the report compares with; default: origin/<base_branch>
    base_branch: str | None = None    # the PR's target; default: main for the embedded profile, else <profile>
    out_dir: Path = Path(".monthly")
    push: bool = True                 # `dvc push` when a default remote is configured
    root: Path = Path(".")
    python: str = sys.executable

    def __post_init__(self):
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", self.month):
            raise ConfigError(f"month {self.month!r}: expected YYYY-MM, e.g. 2026-03")
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", self.profile):
            raise ConfigError(f"profile {self.profile!r}: expected a name such as embedded or production")

    @property
    def target_branch(self) -> str:
        return self.base_branch or ("main" if self.profile == EMBEDDED else self.profile)

    @property
    def branch(self) -> str:
        return f"retrain/{self.month}" if self.profile == EMBEDDED else f"retrain/{self.month}-{self.profile}"


@dataclass
class MonthResult:
    month: str
    profile: str
    branch: str
    base_branch: str
    base: str = ""
    source: str = ""
    source_is_samples: bool = False
    changed: bool = False
    stages_run: list[str] = field(default_factory=list)
    records_added: dict[str, int] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)
    pushed: str = "not run"
    verdict: str | None = None        # pass | warn | fail; None when nothing changed (no report)
    title: str = ""
    files: list[str] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def run_step(name: str, cmd: list[str], root: Path, result: MonthResult, check: bool = True) -> str:
    """Run `cmd` in `root`, echo its output live, record the step; raise MonthlyStepFailed on a non-zero exit."""
    log.info("step started", extra={"step": name, "cmd": " ".join(cmd)})
    print(f"::group::{name}: {' '.join(cmd)}", flush=True)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1)
    except OSError as e:
        raise MonthlyStepFailed(name, f"cannot start `{cmd[0]}`: {e.strerror}") from e
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    code = proc.wait()
    print("::endgroup::", flush=True)
    seconds = round(time.monotonic() - started, 1)
    result.steps.append({"step": name, "exit_code": code, "seconds": seconds})
    output = "".join(lines)
    if code != 0 and check:
        tail = "".join(lines[-TAIL_LINES:]).strip()
        raise MonthlyStepFailed(name, f"`{' '.join(cmd)}` exited {code}\n{tail}")
    return output


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def resolve_base(cfg: MonthlyConfig) -> str:
    """The commit the report compares with: cfg.base, else origin/<branch>, else the local <branch>."""
    candidates = [cfg.base] if cfg.base else [f"origin/{cfg.target_branch}", cfg.target_branch]
    for rev in candidates:
        proc = _git(cfg.root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        if proc.returncode == 0:
            return proc.stdout.strip()
    raise ConfigError(f"base revision not found (tried {', '.join(candidates)}): fetch it or pass --base")


def accepted_records(text: str | None) -> dict[str, int]:
    """{dataset: accepted records} from a data_quality.json text (empty when there is none)."""
    if not text:
        return {}
    return {name: int(d.get("accepted", 0)) for name, d in (json.loads(text).get("datasets") or {}).items()}


def records_added(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after.get(name, 0) - before.get(name, 0) for name in sorted(set(before) | set(after))}


def has_default_remote(cfg: MonthlyConfig) -> bool:
    proc = subprocess.run([cfg.python, "-m", "dvc", "remote", "default"], cwd=cfg.root, capture_output=True,
                          text=True)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def pr_changes(cfg: MonthlyConfig) -> list[str]:
    """The PR paths git sees as modified or new (reports/ is git-tracked: cache: false outputs)."""
    proc = _git(cfg.root, "status", "--porcelain", "-z", "--untracked-files=all", "--", *PR_PATHS)
    if proc.returncode != 0:
        raise MonthlyStepFailed("changes", f"`git status` failed: {proc.stderr.strip()}")
    entries, paths = iter(proc.stdout.split("\0")), []
    for entry in entries:
        if entry:
            paths.append(entry[3:])
            if entry[0] in "RC":  # a rename names its source next: stage both sides
                paths.append(next(entries))
    return paths


def run_month(cfg: MonthlyConfig) -> MonthResult:
    """The whole month; writes the output folder whatever happens, raises MonthlyStepFailed on a failed step."""
    result = MonthResult(cfg.month, cfg.profile, cfg.branch, cfg.target_branch)
    out = cfg.root / cfg.out_dir
    if out.exists():
        shutil.rmtree(out)  # a re-run of the month writes its folder afresh
    out.mkdir(parents=True)
    try:
        _run(cfg, result)
    except MonthlyStepFailed as e:
        _write_json(out / "failure.json", {"month": cfg.month, "step": e.step, "error": str(e)})
        write_outputs(cfg, result, failed=e)
        raise
    write_outputs(cfg, result)
    return result


def _run(cfg: MonthlyConfig, result: MonthResult) -> None:
    py = cfg.python
    try:
        result.base = resolve_base(cfg)
    except ReprolabError as e:
        raise MonthlyStepFailed("base", str(e)) from e
    try:
        if cfg.profile != EMBEDDED:
            apply_profile(cfg.profile, cfg.root / "params.yaml")
            result.steps.append({"step": "profile", "exit_code": 0, "seconds": 0.0})
        fetch = with_upstream(load_section("fetch", FetchConfig, cfg.root / "params.yaml"), UpstreamOverride())
    except ReprolabError as e:
        raise MonthlyStepFailed("profile", str(e)) from e
    result.source = fetch.source
    result.source_is_samples = is_samples(fetch.source, cfg.root)
    if result.source_is_samples:
        warning = fallback_warning(fetch.source)
        result.warnings.append(warning)
        log.warning(warning)
        print(f"\n{'!' * 100}\n{warning}\n{'!' * 100}\n", file=sys.stderr, flush=True)

    before = accepted_records(_git(cfg.root, "show", f"{result.base}:{DATA_QUALITY}").stdout or None)
    run_step("snapshot", [py, "-m", "stages.snapshot"], cfg.root, result)
    repro = run_step("repro", [py, "-m", "dvc", "repro"], cfg.root, result)
    result.stages_run = RAN.findall(repro)
    quality = cfg.root / DATA_QUALITY
    result.records = accepted_records(quality.read_text(encoding="utf-8") if quality.is_file() else None)
    result.records_added = records_added(before, result.records)

    if not cfg.push:
        result.pushed = "skipped (--no-push)"
    elif has_default_remote(cfg):
        run_step("push", [py, "-m", "dvc", "push"], cfg.root, result)
        result.pushed = "pushed"
    else:
        result.pushed = "skipped (no default DVC remote)"

    result.files = pr_changes(cfg)
    result.changed = bool(result.files)
    if not result.changed:
        return
    run_step("report", [py, "-m", "stages.report", "--base", result.base, "--out", str(REPORT)], cfg.root, result)
    try:
        result.verdict = json.loads((cfg.root / GATE).read_text(encoding="utf-8"))["status"]
    except (OSError, ValueError, KeyError) as e:
        raise MonthlyStepFailed("gate", f"{GATE} unreadable after the report step: {e}") from e
    result.steps.append({"step": "gate", "exit_code": 0, "seconds": 0.0, "verdict": result.verdict})
    result.files = pr_changes(cfg)  # now with the report and the verdict


def _added_text(added: dict[str, int]) -> str:
    return ", ".join(f"{name} +{n}" if n >= 0 else f"{name} {n}" for name, n in added.items()) or "none"


def summary_markdown(result: MonthResult, failed: MonthlyStepFailed | None = None) -> str:
    lines = [f"## Monthly retrain {result.month} ({result.profile})", ""]
    for warning in result.warnings:
        lines += [f"> [!WARNING]\n> **{warning}**", ""]
    if failed:
        lines += [f"**FAILED at step `{failed.step}`**: the month is not done and no PR was opened.", "",
                  "```", str(failed)[-3000:], "```"]
        return "\n".join(lines) + "\n"
    lines.append(f"- upstream: `{result.source}`")
    if result.changed:
        lines.append(f"- **changed**: PR branch `{result.branch}` into `{result.base_branch}`, "
                     f"gate verdict **{(result.verdict or '?').upper()}**")
    else:
        lines.append(f"- **nothing changed** upstream or in the pipeline: no PR "
                     f"(the report would compare `{result.base[:8]}` with itself)")
    lines += [f"- records added: {_added_text(result.records_added)}",
              f"- stages re-run: {', '.join(result.stages_run) or 'none'}",
              f"- DVC push: {result.pushed}"]
    return "\n".join(lines) + "\n"


def title_of(result: MonthResult) -> str:
    return (f"Monthly retrain {result.month} ({result.profile}): {_added_text(result.records_added)}; "
            f"gate {(result.verdict or '?').upper()}")


def commit_message(result: MonthResult) -> str:
    return (f"retrain: {result.month} ({result.profile})\n\n"
            f"Upstream: {result.source}\nRecords added: {_added_text(result.records_added)}\n"
            f"Stages re-run: {', '.join(result.stages_run) or 'none'}\nGate: {result.verdict}\n")


def write_outputs(cfg: MonthlyConfig, result: MonthResult, failed: MonthlyStepFailed | None = None) -> None:
    out = cfg.root / cfg.out_dir
    if result.changed and not failed:
        result.title = title_of(result)
        report = (cfg.root / REPORT).read_text(encoding="utf-8")
        header = (f"Monthly retrain of **{result.month}** (profile `{result.profile}`, upstream `{result.source}`)."
                  f"\n\nRecords added: {_added_text(result.records_added)}. Stages re-run: "
                  f"{', '.join(result.stages_run) or 'none'}. Review the report below, then merge (which "
                  f"registers the model versions) or close (main stays as it is; next month reports against it).")
        if result.warnings:
            header = "\n\n".join(f"> [!WARNING]\n> **{w}**" for w in result.warnings) + "\n\n" + header
        (out / "body.md").write_text(f"{header}\n\n{report}", encoding="utf-8")
        (out / "report.md").write_text(report, encoding="utf-8")
        (out / "commit_message.txt").write_text(commit_message(result), encoding="utf-8")
        (out / "files.txt").write_text("".join(f"{p}\n" for p in result.files), encoding="utf-8")
    (out / "summary.md").write_text(summary_markdown(result, failed), encoding="utf-8")
    outputs = {"changed": str(result.changed and not failed).lower(), "branch": result.branch,
               "base_branch": result.base_branch, "title": result.title, "verdict": result.verdict or "",
               "failed_step": failed.step if failed else ""}
    (out / "outputs.env").write_text("".join(f"{k}={v}\n" for k, v in outputs.items()), encoding="utf-8")
    _write_json(out / "result.json", asdict(result) | {"failed_step": failed.step if failed else None})


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def failure_notice(out_dir: Path) -> tuple[str, str]:
    """Title and body of the failure notification, from what the monthly run left in `out_dir`."""
    failure = out_dir / "failure.json"
    result = out_dir / "result.json"
    if failure.is_file():
        f = json.loads(failure.read_text(encoding="utf-8"))
        return (f"reprolab: monthly retrain {f['month']} failed at step '{f['step']}'",
                f"```\n{f['error'][-3000:]}\n```")
    if result.is_file():
        r = json.loads(result.read_text(encoding="utf-8"))
        if r.get("verdict") == "fail":
            return (f"reprolab: monthly retrain {r['month']}: the regression gate failed",
                    f"The PR on `{r['branch']}` is open for review; the report names the failed metrics.")
        return (f"reprolab: monthly retrain {r['month']} failed after the monthly script",
                "The monthly script finished; a later workflow step (branch push, PR, comment) failed.")
    return ("reprolab: monthly retrain failed before the monthly script",
            "A step before `python -m stages.monthly` failed (checkout, set-up, credentials, dvc pull).")
