"""The CLIP model versions one embedding process serves side by side, and which one answers by default.

A version is the model's registered tag (`v2026.12.0`, from `clip@v2026.12.0`) when the deployment names it,
else the md5 DVC recorded for models/clip in dvc.lock (`md5:5429...`): either way, two processes that report
the same version give the same vectors. Vectors of two versions are not comparable: a client stores the version
it indexed with and names it in every request until it has re-embedded (docs/operations.md, runbook).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import yaml

from reprolab.clip.embedding import ClipEmbedder
from reprolab.errors import ConfigError, ReprolabError

log = logging.getLogger(__name__)
SEMVER = re.compile(r"^(?:clip@)?v(\d+)\.(\d+)\.(\d+)$")


class UnknownVersion(ReprolabError):
    status = 404


@dataclass(frozen=True)
class Deprecation:
    since: date
    sunset: date

    def headers(self) -> dict[str, str]:
        """RFC 9745 `Deprecation` (a structured-field date) and RFC 8594 `Sunset` (an HTTP date)."""
        since = datetime(self.since.year, self.since.month, self.since.day, tzinfo=timezone.utc)
        sunset = datetime(self.sunset.year, self.sunset.month, self.sunset.day, tzinfo=timezone.utc)
        return {"Deprecation": f"@{int(since.timestamp())}", "Sunset": sunset.strftime("%a, %d %b %Y %H:%M:%S GMT")}


@dataclass
class ServedModel:
    version: str
    model_dir: str
    model_name: str
    embedder: ClipEmbedder
    deprecation: Deprecation | None = None


def dvc_lock_md5(lock_path: str | Path, out_path: str = "models/clip") -> str | None:
    """The md5 DVC recorded for `out_path` in dvc.lock (a directory's `.dir` suffix dropped); None if absent."""
    path = Path(lock_path)
    if not path.is_file():
        return None
    lock = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == out_path and out.get("md5"):
                return str(out["md5"]).removesuffix(".dir")
    return None


def parse_deprecations(items: dict[str, str]) -> dict[str, Deprecation]:
    """{"v2026.11.0": "2026-12-01/2027-01-31"} -> {version: Deprecation(since, sunset)}."""
    out = {}
    for version, value in items.items():
        since, sep, sunset = value.partition("/")
        try:
            out[version] = Deprecation(date.fromisoformat(since), date.fromisoformat(sunset))
        except ValueError:
            raise ConfigError(f"EMBED_DEPRECATED: {version}={value!r} is not SINCE/SUNSET dates "
                              "(e.g. v2026.11.0=2026-12-01/2027-01-31)") from None
        if not sep or out[version].sunset < out[version].since:
            raise ConfigError(f"EMBED_DEPRECATED: {version}={value!r} needs SINCE/SUNSET with SINCE <= SUNSET")
    return out


def default_version(versions: list[str], deprecated: set[str], chosen: str | None = None) -> str:
    """The chosen one if named, else the newest semver version that is not deprecated, else the last listed."""
    if chosen:
        if chosen not in versions:
            raise ConfigError(f"EMBED_DEFAULT_VERSION {chosen!r} is not served (serving {', '.join(versions)})")
        return chosen
    live = [v for v in versions if v not in deprecated] or versions
    tagged = [v for v in live if SEMVER.match(v)]
    if tagged:
        return max(tagged, key=lambda v: tuple(int(n) for n in SEMVER.match(v).groups()))
    return live[-1]


class ModelSet:
    """Loaded models by version; `get(None)` is the default version."""

    def __init__(self, models: dict[str, ServedModel], default: str):
        self.models, self.default = models, default

    @classmethod
    def load(cls, model_dirs: dict[str, str], deprecations: dict[str, Deprecation], lock_path: str,
             default: str | None = None) -> ModelSet:
        models: dict[str, ServedModel] = {}
        for version, model_dir in model_dirs.items():
            if not version:  # one unnamed model: the md5 dvc.lock recorded for it
                md5 = dvc_lock_md5(lock_path)
                if md5 is None:
                    raise ConfigError(f"no version for {model_dir}: set EMBED_MODEL_VERSION (the registered tag) "
                                      f"or serve it beside a dvc.lock ({lock_path}) that records models/clip")
                version = f"md5:{md5}"
            embedder = ClipEmbedder.from_dir(Path(model_dir))
            name = str(embedder.info.get("model_name") or "clip")
            models[version] = ServedModel(version, model_dir, name, embedder, deprecations.get(version))
            log.info("embedding model loaded", extra={"version": version, "model": name, "model_dir": model_dir,
                                                      "dim": embedder.dim})
        unknown = set(deprecations) - set(models)
        if unknown:
            raise ConfigError(f"EMBED_DEPRECATED names versions not served: {', '.join(sorted(unknown))}")
        return cls(models, default_version(list(models), set(deprecations), default))

    def get(self, version: str | None) -> ServedModel:
        if version is None:
            return self.models[self.default]
        if version not in self.models:
            raise UnknownVersion(f"model version {version[:80]!r} is not served here; "
                                 f"served: {', '.join(self.models)} (default {self.default})")
        return self.models[version]
