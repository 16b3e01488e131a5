"""Profiles: params.production.yaml holds overrides that are merged into params.yaml.

The embedded default and the production profile run the same code; only parameters differ. Applying a
profile rewrites params.yaml in place (comments kept), so `dvc repro`, `dvc params diff` and the PR report
see exactly what changed. Usage: `python -m reprolab.profiles production`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ruamel.yaml import YAML

from reprolab import cli
from reprolab.errors import ConfigError


def merge(base: dict, overrides: dict, where: str = "") -> None:
    """Deep-merge `overrides` into `base` in place; a section the base lacks is an error (a typo)."""
    for key, value in overrides.items():
        path = f"{where}.{key}" if where else str(key)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value, path)
        elif not where and key not in base:
            raise ConfigError(f"profile names section '{path}', which params.yaml does not have")
        else:
            base[key] = value


def apply_profile(name: str, params: Path = Path("params.yaml")) -> None:
    profile = params.with_name(f"params.{name}.yaml")
    if not profile.exists():
        raise ConfigError(f"no profile '{name}': {profile} does not exist")
    yaml = YAML()
    yaml.preserve_quotes = True
    base = yaml.load(params.read_text(encoding="utf-8"))
    merge(base, yaml.load(profile.read_text(encoding="utf-8")) or {})
    tmp = params.with_name(params.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.dump(base, f)
    tmp.replace(params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", help="e.g. production (reads params.production.yaml)")
    apply_profile(parser.parse_args().profile)
    print("params.yaml updated; review with `dvc params diff`", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main, "profiles")
