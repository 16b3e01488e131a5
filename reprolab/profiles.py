"""Profiles: params.<name>.yaml holds overrides that are merged into params.yaml; the upstream override.

The embedded default and the production profile run the same code; only parameters differ. Applying a
profile rewrites params.yaml in the working tree (comments kept), so `dvc repro`, `dvc params diff` and the
PR report see exactly what changed. main holds the embedded default: a production run applies its profile in
the job and never commits params.yaml (the monthly script leaves it out of the PR, docs/workflows.md).
Usage: `python -m reprolab.profiles production`.

The upstream source is the one setting a scheduled run changes without any profile: `REPROLAB_FETCH_SOURCE`
(and `REPROLAB_FETCH_ENDPOINT_URL`) override `params.fetch.source` / `endpoint_url` for `stages.snapshot`, so
the cron reads the customer's prefix from a repository variable while the committed params keep the samples.
The fetch stage's DVC params list does not name `source`, so the override changes no stage hash by itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from ruamel.yaml import YAML

from reprolab import cli
from reprolab.data.atomic import replacing
from reprolab.data.corpus import FetchConfig
from reprolab.errors import ConfigError

SAMPLES = Path("samples")  # the shipped samples: what params.yaml's `fetch.source` names on main


class UpstreamOverride(BaseSettings):
    """The environment's say over where the snapshot comes from (empty values count as unset)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    source: str | None = Field(None, validation_alias="REPROLAB_FETCH_SOURCE")
    endpoint_url: str | None = Field(None, validation_alias="REPROLAB_FETCH_ENDPOINT_URL")


def with_upstream(cfg: FetchConfig, override: UpstreamOverride) -> FetchConfig:
    """`cfg` with the environment's source / endpoint where set."""
    changes = {k: v.strip() for k, v in (("source", override.source), ("endpoint_url", override.endpoint_url))
               if v and v.strip()}
    return cfg.model_copy(update=changes)


def is_samples(source: str, root: Path = Path(".")) -> bool:
    """True when `source` is the shipped samples folder (the fallback a production run must not take quietly)."""
    if "://" in source:
        return False
    return (root / source).resolve() == (root / SAMPLES).resolve()


def fallback_warning(source: str) -> str:
    return (f"WARNING: the upstream source is the shipped samples ({source}), not the customer's data: "
            "set the repository variable UPSTREAM_PREFIX (REPROLAB_FETCH_SOURCE) to the customer's s3:// prefix")


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
    """Merge params.<name>.yaml (beside `params`) into `params`, in place."""
    profile = params.with_name(f"params.{name}.yaml")
    if not profile.exists():
        raise ConfigError(f"no profile '{name}': {profile} does not exist")
    yaml = YAML()
    yaml.preserve_quotes = True
    base = yaml.load(params.read_text(encoding="utf-8"))
    merge(base, yaml.load(profile.read_text(encoding="utf-8")) or {})
    with replacing(params) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yaml.dump(base, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", help="e.g. production (reads params.production.yaml)")
    apply_profile(parser.parse_args().profile)
    print("params.yaml updated; review with `dvc params diff`", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main, "profiles")
