"""dvc.yaml's code deps cannot drift: every project module a stage's command can import is in its `deps:`.

A stage command is `python -m stages.<name>` (after optional VAR=value assignments). From that module, every
`import` statement (module level and inside functions, read with `ast`, so no stage code runs) that lands in
reprolab/ or stages/ is followed, with the package `__init__.py` files Python runs on the way. A module is
covered when a dep names it or a folder above it. Imports built from strings at run time are not seen.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("reprolab", "stages")


def module_file(root: Path, name: str) -> Path | None:
    """The file of project module `name` (a module or a package's __init__.py); None outside the project."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def with_parents(name: str) -> list[str]:
    """`a.b.c` -> [a, a.b, a.b.c]: importing a submodule runs every package __init__ above it."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imported_names(root: Path, path: Path) -> set[str]:
    """Every module name the file's import statements can load, wherever the statement sits."""
    package = ".".join(path.relative_to(root).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            names.add(base)
            # `from pkg import mod` loads pkg/mod.py when it is a submodule, not a name in pkg/__init__.py
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def package_data(folder: Path) -> set[Path]:
    """Files a package reads beside its code (reprolab/clip/model_configs/*.json): non-.py files in its folder
    and in its sub-folders that are not packages themselves."""
    found = set()
    for path in folder.iterdir():
        if path.is_file() and path.suffix not in (".py", ".pyc"):
            found.add(path)
        elif path.is_dir() and path.name != "__pycache__" and not (path / "__init__.py").exists():
            found.update(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return found


def code_deps(root: Path, module: str) -> set[str]:
    """Repo-relative paths of every project file that `python -m <module>` can import (transitively), with the
    package data beside each module."""
    seen: set[Path] = set()
    todo = with_parents(module)
    while todo:
        path = module_file(root, todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        for name in imported_names(root, path):
            todo.extend(with_parents(name))
    data = set().union(*(package_data(p.parent) for p in seen))
    return {p.relative_to(root).as_posix() for p in seen | data}


def stage_module(cmd: str) -> str:
    """The module a stage runs: `[VAR=value ...] python -m stages.<name>`; anything else is a test failure."""
    words = shlex.split(cmd)
    while words and "=" in words[0] and not words[0].startswith("-"):
        words.pop(0)
    if len(words) != 3 or words[:2] != ["python", "-m"] or not words[2].startswith("stages."):
        raise AssertionError(f"cannot derive code deps of {cmd!r}: expected `python -m stages.<name>`")
    return words[2]


def dep_paths(stage: dict) -> list[str]:
    return [next(iter(d)) if isinstance(d, dict) else d for d in stage.get("deps", [])]


def uncovered(root: Path, dvc_yaml: dict) -> dict[str, list[str]]:
    """For each stage, the project files it imports that none of its deps covers."""
    missing = {}
    for name, stage in dvc_yaml["stages"].items():
        deps = [d.rstrip("/") for d in dep_paths(stage)]
        needed = code_deps(root, stage_module(stage["cmd"]))
        gaps = sorted(f for f in needed if not any(f == d or f.startswith(d + "/") for d in deps))
        if gaps:
            missing[name] = gaps
    return missing


def load_dvc_yaml() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))


def test_every_stage_lists_the_project_code_it_imports():
    missing = uncovered(REPO, load_dvc_yaml())
    listing = "\n".join(f"  {stage}: {', '.join(files)}" for stage, files in missing.items())
    assert not missing, f"dvc.yaml deps miss code the stage imports (add them to its deps):\n{listing}"


def test_every_code_dep_exists():
    """A dep on a path that is gone (a renamed module) covers nothing: it is drift too."""
    stale = {name: [d for d in dep_paths(stage) if d.startswith(PROJECT_PACKAGES) and not (REPO / d).exists()]
             for name, stage in load_dvc_yaml()["stages"].items()}
    assert not {k: v for k, v in stale.items() if v}


@pytest.mark.parametrize("stage, dep", [("index", "reprolab/rag"), ("train_clip", "stages/train_clip.py"),
                                        ("fetch", "stages")])
def test_a_planted_missing_dep_is_reported(stage, dep):
    """Remove one dep from a copy of dvc.yaml: the checker names the stage and a file that dep covered."""
    dvc_yaml = load_dvc_yaml()
    deps = dvc_yaml["stages"][stage]["deps"]
    covering = [d for d in dep_paths(dvc_yaml["stages"][stage]) if d == dep or d.startswith(dep + "/")]
    assert covering, f"{stage} has no dep under {dep} to remove"
    before = uncovered(REPO, dvc_yaml)
    dvc_yaml["stages"][stage]["deps"] = [d for d in deps if d not in covering]
    after = uncovered(REPO, dvc_yaml)
    planted = set(after.get(stage, [])) - set(before.get(stage, []))
    assert planted, f"removing {covering} from {stage} went unnoticed"
    assert all(f == dep or f.startswith(dep + "/") for f in planted)
    assert {k: v for k, v in after.items() if k != stage} == {k: v for k, v in before.items() if k != stage}


def test_imports_inside_functions_and_relative_imports_are_followed(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "reprolab" / "pkg").mkdir(parents=True)
    (tmp_path / "stages" / "__init__.py").write_text("")
    (tmp_path / "stages" / "job.py").write_text("def main():\n    from reprolab.pkg import a\n")
    (tmp_path / "reprolab" / "__init__.py").write_text("")
    (tmp_path / "reprolab" / "pkg" / "__init__.py").write_text("")
    (tmp_path / "reprolab" / "pkg" / "a.py").write_text("from . import b\nimport json\n")
    (tmp_path / "reprolab" / "pkg" / "b.py").write_text("from ..other import thing\n")
    (tmp_path / "reprolab" / "other.py").write_text("thing = 1\n")
    (tmp_path / "reprolab" / "unused.py").write_text("")
    (tmp_path / "reprolab" / "pkg" / "configs").mkdir()
    (tmp_path / "reprolab" / "pkg" / "configs" / "m.json").write_text("{}")
    assert code_deps(tmp_path, "stages.job") == {
        "stages/__init__.py", "stages/job.py", "reprolab/__init__.py", "reprolab/pkg/__init__.py",
        "reprolab/pkg/a.py", "reprolab/pkg/b.py", "reprolab/other.py", "reprolab/pkg/configs/m.json"}
    dvc_yaml = {"stages": {"job": {"cmd": "X=1 python -m stages.job", "deps": ["stages", "reprolab/pkg"]}}}
    assert uncovered(tmp_path, dvc_yaml) == {"job": ["reprolab/__init__.py", "reprolab/other.py"]}


def test_a_command_that_is_not_a_stage_module_is_refused():
    with pytest.raises(AssertionError, match="python -m stages"):
        stage_module("bash -c 'python train.py'")
