"""Typed configuration: each stage reads its own section of params.yaml into a pydantic model.

Config classes live beside the code they configure; this module only loads and validates them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from reprolab.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")

Section = TypeVar("Section", bound=BaseModel)


def cache_path(kind: str) -> Path:
    """Where derived, re-creatable files of one kind live (converted model weights, ONNX exports):
    `$REPROLAB_CACHE/<kind>`, `.cache/<kind>` of the working directory by default (git-ignored)."""
    return Path(os.environ.get("REPROLAB_CACHE", ".cache")) / kind


class StrictConfig(BaseModel):
    """Base for config sections: unknown keys are errors, so a typo in params.yaml never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


def read_params(path: Path = DEFAULT_PARAMS) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            params = yaml.safe_load(f) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"{path} not found: run from the repository root") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(params).__name__}")
    return params


def load_section(name: str, cls: type[Section], path: Path = DEFAULT_PARAMS) -> Section:
    """Read section `name` of params.yaml into `cls`, with a message that names the bad key."""
    params = read_params(path)
    if name not in params:
        raise ConfigError(f"{path} has no '{name}' section")
    try:
        return cls.model_validate(params[name])
    except ValidationError as e:
        problems = "; ".join(
            f"{name}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"{path}: {problems}") from e


def with_overrides(section: Section, items: list[str], where: str = "") -> Section:
    """A copy of `section` with `key.sub=value` overrides (values parsed as YAML), validated again.

    For experiment scripts (`--set train.epochs=10`); a key the section does not have is an error.
    """
    data = section.model_dump()
    for item in items:
        key, sep, value = item.partition("=")
        *path, leaf = key.split(".")
        node = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not sep or not isinstance(node, dict) or leaf not in node:
            raise ConfigError(f"override {item!r}: {where or type(section).__name__} has no key {key!r}")
        node[leaf] = yaml.safe_load(value)
    try:
        return type(section).model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"overrides {items}: {e}") from e
