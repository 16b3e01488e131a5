"""Entry-point wrapper for stages and scripts: JSON logs, and a clear message instead of a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from reprolab import logs
from reprolab.errors import ReprolabError


def run(main: Callable[[], object], name: str) -> None:
    """Run `main`; a ReprolabError ends in one line on stderr and exit status 2."""
    logs.configure()
    log = logging.getLogger(name)
    try:
        main()
    except ReprolabError as e:
        log.error("failed", extra={"error": str(e), "kind": type(e).__name__})
        print(f"error: {name}: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"error: {name}: interrupted", file=sys.stderr)
        sys.exit(130)
