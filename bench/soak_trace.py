"""Launcher for ``bench_soak.py --launcher``: runs ``python -m api.cli ...`` with memory probes.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_soak.py --minutes 28 --launcher
bench/soak_trace.py`` with, in the environment:

- ``SOAK_TRACE_DIR``: where to write (required; created);
- ``SOAK_TRACE_START``: seconds after launch when tracemalloc starts (default 120, after the
  demo's history backfill, whose allocations would otherwise dominate);
- ``SOAK_TRACE_AT``: comma-separated seconds after launch at which a snapshot is dumped to
  ``snap_<s>.pickle`` (default ``480,1500``: minute 8 and minute 25);
- ``SOAK_TRACE_FRAMES``: frames per traceback (default 10);
- ``SOAK_TRIM_S``: call glibc's ``malloc_trim(0)`` every that many seconds (default 0: never),
  an experiment on fragmentation.

``SOAK_TRACE_START=-1`` never starts tracemalloc (the probes only).

Every minute a line goes to ``mem.log``: RSS, the traced Python bytes, SQLite's own memory
(``sqlite3_memory_used``) and glibc's ``mallinfo2`` (bytes in use and free in malloc's arenas,
bytes in chunks malloc mmapped); numpy's buffers are traced by tracemalloc too (its own
domain). Compare two snapshots with ``python bench/soak_trace.py --compare A.pickle B.pickle``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path

_MB = 2**20


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _sqlite_used() -> int:
    import sqlite3  # noqa: F401  (loads libsqlite3 into the process)
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        return int(lib.sqlite3_memory_used())
    except (OSError, AttributeError):
        return -1


def _mallinfo() -> tuple[int, int, int]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        m = libc.mallinfo2()
        return int(m.uordblks), int(m.fordblks), int(m.hblkhd)
    except (OSError, AttributeError):
        return -1, -1, -1


def _trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return -1


def _probe(out: Path, start: float, at: list[float], frames: int, trim_s: float) -> None:
    t0 = time.monotonic()
    pending = sorted(at)
    started = False
    nxt_log = 60.0
    nxt_trim = trim_s if trim_s > 0 else float("inf")
    with (out / "mem.log").open("a", encoding="utf-8") as log:
        log.write("t_s rss_mb traced_mb sqlite_mb malloc_used_mb malloc_free_mb mmap_mb\n")
        while True:
            now = time.monotonic() - t0
            if now >= nxt_trim:
                nxt_trim += trim_s
                _trim()
            if not started and 0 <= start <= now:
                tracemalloc.start(frames)
                started = True
            if pending and now >= pending[0]:
                s = pending.pop(0)
                snap = tracemalloc.take_snapshot() if started else None
                if snap is not None:
                    snap = snap.filter_traces([
                        tracemalloc.Filter(False, tracemalloc.__file__),
                        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
                        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
                    ])
                    snap.dump(str(out / f"snap_{int(s)}.pickle"))
            if now >= nxt_log:
                nxt_log += 60.0
                used, free, mm = _mallinfo()
                traced = tracemalloc.get_traced_memory()[0] if started else 0
                log.write(f"{now:.0f} {_rss() / _MB:.1f} {traced / _MB:.1f} "
                          f"{_sqlite_used() / _MB:.1f} {used / _MB:.1f} {free / _MB:.1f} "
                          f"{mm / _MB:.1f}\n")
                log.flush()
            time.sleep(1.0)


def compare(a: str, b: str, top: int = 10) -> None:
    s1 = tracemalloc.Snapshot.load(a)
    s2 = tracemalloc.Snapshot.load(b)
    for key in ("lineno", "traceback"):
        print(f"=== top {top} growers by {key} ===")
        for st in s2.compare_to(s1, key)[:top]:
            print(f"{st.size_diff / 1024:+.1f} KiB ({st.count_diff:+d} blocks), "
                  f"now {st.size / 1024:.1f} KiB in {st.count} blocks")
            if key == "traceback":
                for line in st.traceback.format(limit=10, most_recent_first=True):
                    print("   ", line)
            else:
                print("   ", st.traceback[0])


def main() -> None:
    if len(sys.argv) >= 4 and sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 10)
        return
    out = Path(os.environ["SOAK_TRACE_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    start = float(os.environ.get("SOAK_TRACE_START", "120"))
    at = [float(x) for x in os.environ.get("SOAK_TRACE_AT", "480,1500").split(",") if x]
    frames = int(os.environ.get("SOAK_TRACE_FRAMES", "10"))
    trim_s = float(os.environ.get("SOAK_TRIM_S", "0"))
    threading.Thread(target=_probe, args=(out, start, at, frames, trim_s), daemon=True,
                     name="soak-trace").start()
    sys.argv = ["api.cli", *sys.argv[1:]]
    runpy.run_module("api.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
