"""One CPU numeric setting for every x86-64 host of this kind, so a rebuild gives the same bytes anywhere.

torch picks its CPU kernels by what the processor offers: ATen by CPU capability (AVX512 here, AVX2
elsewhere), oneDNN by ISA (AMX and AVX-512 BF16 where present), MKL by code path, numpy by its own SIMD
dispatch. Each choice changes the last bits of a float result, and training carries them into every later
step. So the cap below names AVX2 (every host of the kind has it) for all four; the variables are read
once, when each library loads, so `pin_cpu` must run before torch or numpy is imported: `stages/__init__.py`
calls it for every stage.

What else a stage needs for the same bytes stays where it is configured: the thread count (params
`threads`, `torch.set_num_threads`), seeds and `torch.use_deterministic_algorithms` (the training code).
OpenBLAS (numpy's BLAS) follows the workplace's own OPENBLAS_CORETYPE, which this module leaves alone.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import MutableMapping

# Each library's ISA names, lowest first: a host may already be capped lower (the tests restrict it so).
ATEN_LEVELS = ("default", "avx2", "avx512")                    # ATEN_CPU_CAPABILITY
ONEDNN_LEVELS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                 "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
                 "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "ALL")  # ONEDNN_MAX_CPU_ISA
MKL_LEVELS = ("SSE4_2", "AVX", "AVX2", "AVX2_E1", "AVX512", "AVX512_E1", "AVX512_E2", "AVX512_E3",
              "AVX512_E4", "AVX512_E5")                        # MKL_ENABLE_INSTRUCTIONS

CAP = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}
# MKL's conditional numerical reproducibility: the AVX2 code path, and STRICT so results do not follow the
# thread count or the memory alignment either.
MKL_CBWR = "AVX2,STRICT"
# numpy's dispatch targets above AVX2 (numpy 2.x names: X86_V4 = AVX-512 F/CD/VL/BW/DQ; ICL, SPR beyond).
NUMPY_ABOVE_CAP = ("X86_V4", "AVX512_ICL", "AVX512_SPR")

_LEVELS = {"ATEN_CPU_CAPABILITY": ATEN_LEVELS, "ONEDNN_MAX_CPU_ISA": ONEDNN_LEVELS,
           "MKL_ENABLE_INSTRUCTIONS": MKL_LEVELS}
_LATE = ("torch", "numpy")


class CpuPinError(ValueError):
    """A variable the pin caps names an ISA the library does not know."""


def capped(name: str, current: str | None, cap: str) -> str:
    """The lower of the host's existing cap (if any) and ours, in the library's own ISA order."""
    if not current:
        return cap
    levels = [level.upper() for level in _LEVELS[name]]
    if current.upper() not in levels:
        raise CpuPinError(f"{name}={current!r} is not one of {', '.join(_LEVELS[name])}")
    return current if levels.index(current.upper()) < levels.index(cap.upper()) else cap


def cpu_pin(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The variables to set on top of `environ`: the cap, or the host's own lower cap."""
    environ = os.environ if environ is None else environ
    pin = {name: capped(name, environ.get(name), cap) for name, cap in CAP.items()}
    pin["MKL_CBWR"] = MKL_CBWR
    disabled = environ.get("NPY_DISABLE_CPU_FEATURES", "").replace(",", " ").split()
    pin["NPY_DISABLE_CPU_FEATURES"] = " ".join(dict.fromkeys([*disabled, *NUMPY_ABOVE_CAP]))
    return pin


def pin_cpu(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the pin in `environ` (the process environment: children inherit it) before torch or numpy loads.

    Called after either library has loaded (a test importing a stage module in-process), the pin still reaches
    child processes but not this one: that is said with a RuntimeWarning, never silently.
    """
    target = os.environ if environ is None else environ
    pin = cpu_pin(target)
    if target is os.environ:
        late = [name for name in _LATE if name in sys.modules]
        if late and any(target.get(k) != v for k, v in pin.items()):
            warnings.warn(f"{' and '.join(late)} already imported: the CPU pin reaches child processes only",
                          RuntimeWarning, stacklevel=2)
    target.update(pin)
    return pin
