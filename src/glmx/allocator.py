"""The C allocator's thresholds for a process that fits models: freed n-vectors reused.

A fit allocates and frees temporaries the size of the data (n-vectors, n x k blocks) many
times.  glibc's malloc returns the free memory at the top of its heap to the system once
it exceeds the *trim threshold*, and serves blocks above the *mmap threshold* by fresh
mappings; either way the next temporary of that size starts on pages the kernel must
fault in and zero, which can cost more than the arithmetic done on them.  glibc adapts
both thresholds to the blocks a program frees, up to a ceiling (mmap 32 MiB, trim twice
that), but the adaptation depends on the order of the frees, so the same fit can spend a
quarter of its time in page faults or none.  :func:`reuse_freed_memory` sets the
thresholds to glibc's own ceiling once, at the first fit: blocks up to 32 MiB come from
the heap and up to 64 MiB of free heap is kept for the next temporaries.

Only glibc is touched (Linux); ``GLMX_MALLOC_TUNING=0`` leaves the allocator alone.
glibc's tuning is process-wide and cannot be handed back to the adaptive rule.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

# mallopt's parameters (malloc.h) and glibc's ceilings of its adaptive thresholds
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what the adaptive rule sets with it

_lock = threading.Lock()
_state: dict[str, bool] = {}


def reuse_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds to their adaptive ceilings (once per process);
    whether they are set.  A no-op off glibc or with ``GLMX_MALLOC_TUNING=0``."""
    with _lock:
        if "done" not in _state:
            _state["done"] = _set_thresholds()
        return _state["done"]


def _set_thresholds() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    if os.environ.get("GLMX_MALLOC_TUNING", "").strip() == "0":
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
