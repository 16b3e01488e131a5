"""Named model versions: GTO-style annotated git tags `<artifact>@v<YYYY>.<M>.<N>` for the DVC `artifacts:`.

`python -m reprolab.registry tag` (`make tag-models`) registers a version of every artifact declared in
dvc.yaml on the current commit, named after the month of that commit: the CLIP model retrained in March 2026
becomes `clip@v2026.3.0` (a second registration in the same month `clip@v2026.3.1`). The version is semver,
as GTO and `dvc artifacts get` require (`v2026.03` would not parse: no patch, and semver forbids the leading
zero), so both work on these tags:

    dvc artifacts get . clip --rev v2026.3.0          # or: gto show clip
    git checkout clip@v2026.3.0 && dvc checkout models/clip   # (dvc pull models/clip without a local cache)

An artifact whose output hash in dvc.lock is the same as at its latest version is not registered again
(`--all` registers it anyway), and an artifact already tagged on this commit is left alone: re-running is a
no-op. The tag itself is written by the `gto` library (`gto.api.register` with an explicit version): gto
knows the tag format, but not DVC's output hashes or a month-based version, which is what this module adds.
`--tags-file` lists the tags created (register.yml pushes them and dispatches deploy.yml for `clip@v*`).
"""

from __future__ import annotations

import argparse
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml
from gto import api as gto_api
from gto.exceptions import GTOException

from reprolab import cli
from reprolab.errors import ReprolabError

VERSION = re.compile(r"^v(?P<year>\d{4})\.(?P<month>[1-9]\d?)\.(?P<n>0|[1-9]\d*)$")


class RegistryError(ReprolabError):
    """Tagging failed: not a git repository, no artifacts declared, or git refused the tag."""


@dataclass
class Registered:
    artifact: str
    tag: str
    created: bool  # False: skipped (why in `reason`)
    reason: str = ""


def _git(root: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RegistryError(f"`git {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc.stdout if proc.returncode == 0 else ""


def declared_artifacts(root: Path, rev: str | None = None) -> dict[str, dict]:
    """{name: {"path", "type", ...}} from dvc.yaml's `artifacts:` (at `rev`, else in the workspace)."""
    text = _git(root, "show", f"{rev}:dvc.yaml", check=False) if rev else (root / "dvc.yaml").read_text()
    artifacts = (yaml.safe_load(text) or {}).get("artifacts") or {}
    if not artifacts:
        raise RegistryError("dvc.yaml declares no `artifacts:`: nothing to register")
    return artifacts


def output_hash(root: Path, rev: str, path: str) -> str | None:
    """The md5 dvc.lock records at `rev` for the stage output `path` (None: not an output there)."""
    lock = yaml.safe_load(_git(root, "show", f"{rev}:dvc.lock", check=False) or "{}") or {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs", []):
            if out.get("path", "").rstrip("/") == path.rstrip("/"):
                return out.get("md5")
    return None


def versions(root: Path, artifact: str) -> list[tuple[tuple[int, int, int], str]]:
    """Registered versions of `artifact`, oldest first: ((year, month, n), tag)."""
    found = []
    for tag in _git(root, "tag", "--list", f"{artifact}@v*").split():
        m = VERSION.match(tag.split("@", 1)[1])
        if m:
            found.append(((int(m["year"]), int(m["month"]), int(m["n"])), tag))
    return sorted(found)


def month_of(root: Path, rev: str) -> tuple[int, int]:
    """Year and month of the commit's committer date (UTC): the same for every re-run on that commit."""
    when = datetime.fromtimestamp(int(_git(root, "log", "-1", "--format=%ct", rev).strip()), tz=timezone.utc)
    return when.year, when.month


def register(root: Path = Path("."), rev: str = "HEAD", only: list[str] | None = None,
             month: str | None = None, register_unchanged: bool = False) -> list[Registered]:
    """Create the annotated tags; returns what was registered and what was skipped, per artifact."""
    commit = _git(root, "rev-parse", "--verify", f"{rev}^{{commit}}").strip()
    artifacts = declared_artifacts(root, commit)
    unknown = sorted(set(only or []) - set(artifacts))
    if unknown:
        raise RegistryError(f"unknown artifact(s) {unknown}: dvc.yaml declares {sorted(artifacts)}")
    if month:
        m = re.fullmatch(r"(\d{4})[-.](\d{1,2})", month)
        if not m or not 1 <= int(m[2]) <= 12:
            raise RegistryError(f"--month {month!r}: expected YYYY-MM, e.g. 2026-03")
        year, mon = int(m[1]), int(m[2])
    else:
        year, mon = month_of(root, commit)
    results = []
    for name in sorted(only or artifacts):
        path = artifacts[name]["path"]
        known = versions(root, name)
        on_commit = [tag for _, tag in known if _git(root, "rev-list", "-n1", tag).strip() == commit]
        if on_commit:
            results.append(Registered(name, on_commit[-1], False, "already registered on this commit"))
            continue
        current = output_hash(root, commit, path)
        if current is None:
            reason = f"{path} has no entry in dvc.lock: run `dvc repro` and commit first"
            results.append(Registered(name, "", False, reason))
            continue
        if known and not register_unchanged and output_hash(root, known[-1][1], path) == current:
            results.append(Registered(name, known[-1][1], False, "unchanged since its latest version"))
            continue
        n = 1 + max((v[2] for v, _ in known if v[:2] == (year, mon)), default=-1)
        version = f"v{year}.{mon}.{n}"
        try:
            gto_api.register(str(root), name, commit, version=version,
                             message=f"Registering artifact {name} version {version}\n\npath: {path}\nmd5: {current}")
        except GTOException as e:
            raise RegistryError(f"gto could not register {name}@{version}: {e}") from e
        results.append(Registered(name, f"{name}@{version}", True))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    tag = sub.add_parser("tag", help="register a version of each artifact on a commit (annotated git tags)")
    tag.add_argument("--rev", default="HEAD")
    tag.add_argument("--only", nargs="*", help="artifact names (default: all declared in dvc.yaml)")
    tag.add_argument("--month", help="YYYY-MM of the version (default: the commit's month)")
    tag.add_argument("--all", action="store_true", help="register artifacts whose output did not change too")
    tag.add_argument("--tags-file", type=Path, help="write the tags created, one a line")
    args = parser.parse_args()
    results = register(Path("."), args.rev, args.only, args.month, args.all)
    for r in results:
        print(f"{r.artifact}: {'registered ' + r.tag if r.created else 'skipped (' + r.reason + ')'}"
              + (f" [{r.tag}]" if not r.created and r.tag else ""))
    if args.tags_file:
        args.tags_file.write_text("".join(f"{r.tag}\n" for r in results if r.created), encoding="utf-8")
    print("push the tags with: git push origin --tags")


if __name__ == "__main__":
    cli.run(main, "registry")
