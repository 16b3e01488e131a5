"""One thin module per DVC stage: read params, call the library, write outputs."""

import sys

from reprolab.determinism import CpuPinError, pin_cpu

# Every stage runs as `python -m stages.<name>`, so this runs before the stage imports torch or numpy: a bare
# `dvc repro` or `dvc exp run` gets the same CPU kernels on every host (README "Rebuild it from data").
try:
    pin_cpu()
except CpuPinError as err:
    print(f"error: CPU pin: {err}", file=sys.stderr)
    raise SystemExit(2) from None
