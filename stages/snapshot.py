"""Bring upstream data into the versioned snapshot `data/` and record it in data.dvc.

Not a DVC stage: it is the one step that talks to the upstream source (params.fetch.source). The monthly
workflow runs it before `dvc repro`; when upstream has nothing new, data/ and data.dvc stay byte-identical,
and `dvc repro` re-runs nothing. REPROLAB_FETCH_SOURCE / REPROLAB_FETCH_ENDPOINT_URL override the params'
source without editing params.yaml (reprolab/profiles.py).
"""

from __future__ import annotations

import argparse
import logging
from reprolab import cli
from reprolab.config import load_section
from reprolab.data.corpus import FetchConfig
from reprolab.data.snapshot import update_snapshot
from reprolab.data.sources import open_source
from reprolab.errors import ReprolabError
from reprolab.profiles import UpstreamOverride, with_upstream
from stages.common import SNAPSHOT

log = logging.getLogger("snapshot")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-dvc", action="store_true", help="update data/ but do not run `dvc add`")
    args = parser.parse_args()
    cfg = with_upstream(load_section("fetch", FetchConfig), UpstreamOverride())
    snapshot = SNAPSHOT
    result = update_snapshot(open_source(cfg.source, cfg.endpoint_url), snapshot)
    print(
        f"snapshot {snapshot}/ from {cfg.source}: {len(result.downloaded)} downloaded, "
        f"{result.kept} unchanged, {len(result.removed)} removed"
    )
    if not args.no_dvc:
        from dvc.exceptions import DvcException
        from dvc.repo import Repo

        try:
            with Repo(".") as repo:
                repo.add(str(snapshot))
        except DvcException as e:
            raise ReprolabError(f"`dvc add {snapshot}` failed: {e}") from e
        log.info("recorded in data.dvc", extra={"changed": result.changed})


if __name__ == "__main__":
    cli.run(main, "snapshot")
