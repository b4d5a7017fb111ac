"""glibc allocator padding, so that per-block temporaries do not fault their pages in again.

Decoders make temporaries of a few hundred KiB per block. With glibc's defaults, freeing them trims
the top of the heap and the next block's temporaries fault fresh pages in; on virtual machines,
where a page fault costs microseconds, that dominated decoding (measured on the development VM in a
fresh process: EVT 2.0 48 -> 127 Mev/s, EVT 3.0 7.4 -> 12.9 Mev/s). Keeping a 64 MiB pad at the top
of the heap (``mallopt(M_TOP_PAD)``, like ``MALLOC_TOP_PAD_=67108864``) and serving allocations
below 32 MiB from the heap (``M_MMAP_THRESHOLD``, glibc's own dynamic ceiling) removes that.

This is process-wide: the process keeps up to 64 MiB of freed heap memory instead of returning it
to the system. It is applied once, the first time an event file is read or written, and skipped if
``MALLOC_TOP_PAD_`` is already set, if ``SPIKEFORGE_MALLOC_TUNING=0``, or off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TOP_PAD, _M_MMAP_THRESHOLD = -2, -3
TOP_PAD_BYTES = 64 << 20
#: glibc's own ceiling for its dynamic threshold; setting any parameter freezes the threshold,
#: so it is set explicitly (left at 128 KiB, every temporary would be a fresh mmap)
MMAP_THRESHOLD_BYTES = 32 << 20
_done = False


def tune_allocator(top_pad: int = TOP_PAD_BYTES) -> bool:
    """Set glibc's ``M_TOP_PAD`` to ``top_pad`` bytes; False if not possible (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(MMAP_THRESHOLD_BYTES)))
    return ok and bool(mallopt(ctypes.c_int(_M_TOP_PAD), ctypes.c_int(min(top_pad, 2**31 - 1))))


def ensure_tuned() -> None:
    """Apply ``tune_allocator()`` once per process unless disabled (see the module docstring)."""
    global _done
    if _done:
        return
    _done = True
    if os.environ.get("SPIKEFORGE_MALLOC_TUNING", "1") == "0" or "MALLOC_TOP_PAD_" in os.environ:
        return
    tune_allocator()
