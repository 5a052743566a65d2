"""The C allocator's arenas: at most two for the whole gateway (glibc only).

glibc's malloc gives each thread that allocates its own arena, up to 8 per core: the gateway's
threads (KPI workers, the asyncio executor's, the store writer, the roll-up maintainer, the
simulators' clients) each got one. Their allocations are short-lived and of every size (a
request's numpy arrays of a day of samples, SQLite's statements, JSON bodies), and an arena
returns memory to the system only from its top: freed chunks stay resident, scattered over a
dozen arenas, and each arena's share of the free memory grew with the hours (issue 13's soak:
malloc's free-but-resident bytes 66 -> 95 MB in 25 minutes while the traced Python objects
stayed at ~10 MB; RSS followed the free bytes, not the objects). Two arenas reuse one
another's freed chunks; the threads mostly hold the GIL anyway, so they rarely wait for an
arena's lock. ``docs/benchmarks.md`` (Soak) has the figures.

``MALLOC_ARENA_MAX`` (or ``GLIBC_TUNABLES=glibc.malloc.arena_max=...``) set by the operator
wins: this module then leaves malloc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["ARENAS", "limit_arenas"]

#: the arenas the gateway runs with (mallopt's M_ARENA_MAX)
ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc at ``arenas`` arenas; call it before threads start. True when
    applied; False when the operator set the limit (environment), or the C library is not
    glibc (musl, macOS: their allocators have no per-thread arenas to cap)."""
    if "MALLOC_ARENA_MAX" in os.environ or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, int(arenas)))
