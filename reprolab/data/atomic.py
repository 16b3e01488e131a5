"""Replace a folder by a complete new version with renames, so readers never see a half-written one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def swap_in(new: Path, final: Path) -> None:
    """Move the finished folder `new` to `final`; the previous `final` is removed only after the swap."""
    old = final.with_name(final.name + ".old")
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)
