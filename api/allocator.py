"""The C allocator, set up for a long-running gateway (glibc only; issue 13).

Under the soak (the demo plus 5 dashboards, ``bench/bench_soak.py``) the traced Python objects
stayed at ~10 MB while malloc's free-but-resident bytes rose 66 -> 95 MB in 25 minutes and the
RSS followed them: fragmentation, not live objects. Two glibc defaults make it:

- **The dynamic mmap threshold.** An allocation above the threshold (128 kB at start) is its
  own ``mmap``, returned to the system when freed; but each such free raises the threshold
  to that size (up to 32 MB). A KPI request's numpy arrays of a day of samples (hundreds of
  kB each) then come from the arenas, and an arena gives memory back only from its top:
  a freed array below a live chunk stays resident. Fixed at 128 kB, every large buffer is
  mapped and unmapped again.
- **One arena per thread** (up to 8 per core): the KPI workers, the asyncio executor's
  threads, the store writer, the roll-up maintainer each fragment an arena of their own. Two
  arenas reuse one another's freed chunks; the threads mostly hold the GIL anyway, so they
  rarely wait for an arena's lock.

An operator's own setting wins: ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``, or
``GLIBC_TUNABLES`` naming ``arena_max`` / ``mmap_threshold`` leave that setting as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["ARENAS", "MMAP_THRESHOLD", "tune_malloc"]

#: arenas the gateway runs with (mallopt's M_ARENA_MAX)
ARENAS = 2
#: allocations of at least this many bytes are mmapped (mallopt's M_MMAP_THRESHOLD; glibc's
#: initial value, kept fixed)
MMAP_THRESHOLD = 128 * 1024
_M_ARENA_MAX = -8  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def tune_malloc(arenas: int = ARENAS, mmap_threshold: int | None = MMAP_THRESHOLD) -> list[str]:
    """Cap glibc's arenas at ``arenas`` and fix its mmap threshold at ``mmap_threshold``
    bytes (None: glibc's sliding threshold); call it before threads start. Returns the
    settings applied (``arena_max``, ``mmap_threshold``): none when the C library is not
    glibc (musl and macOS have no per-thread arenas nor a sliding threshold), none of those
    the operator set."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    wanted = []
    if "MALLOC_ARENA_MAX" not in os.environ and "arena_max" not in tunables:
        wanted.append(("arena_max", _M_ARENA_MAX, int(arenas)))
    if (mmap_threshold is not None and "MALLOC_MMAP_THRESHOLD_" not in os.environ
            and "mmap_threshold" not in tunables):
        wanted.append(("mmap_threshold", _M_MMAP_THRESHOLD, int(mmap_threshold)))
    if not wanted:
        return []
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.malloc_info  # noqa: B018  (glibc's; musl has a mallopt that does nothing)
    except (OSError, AttributeError):
        return []
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return [name for name, param, value in wanted if mallopt(param, value) == 1]
