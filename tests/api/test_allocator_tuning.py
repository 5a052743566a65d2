"""``tierproof`` sets glibc's malloc up as api.allocator says (issue 13's memory growth).

Each case runs a fresh interpreter. Arenas: 8 threads each allocate and hold 200 kB (through
``malloc``: Python hands allocations above 512 bytes to it), then glibc's ``malloc_info`` is
read, whose XML has one ``<heap nr=...>`` per arena. A thread's first malloc takes a new
arena while the cap allows, so without a cap the count is 9 (the main arena and one per
thread; glibc allows 8 per core), with it 2. The mmap threshold: after a 1 MB buffer is
freed, is a 600 kB one still mmapped (``mallinfo2().hblks`` counts mmapped chunks)? By
default no (the free raised the threshold to 1 MB), with the fixed threshold yes. Real
glibc, no fakes; skipped elsewhere.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's arenas only")

# api/allocator.py by its path: importing the ``api`` package would load the whole app
_ALLOCATOR = ("import importlib.util as u; spec = u.spec_from_file_location('a', 'api/allocator.py'); "
              "a = u.module_from_spec(spec); spec.loader.exec_module(a)")

_PROBE = r"""
import ctypes, ctypes.util, re, sys, threading, tempfile
SETUP
libc = ctypes.CDLL(ctypes.util.find_library("c"))
held, ready, done = [], threading.Barrier(9), threading.Event()
def worker():
    held.append(bytearray(200_000))
    ready.wait()
    done.wait()
threads = [threading.Thread(target=worker) for _ in range(8)]
for t in threads:
    t.start()
ready.wait()
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile(suffix=".xml") as f:
    fp = libc.fopen(f.name.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    xml = open(f.name).read()
done.set()
for t in threads:
    t.join()
print(len(re.findall(r'<heap nr="\d+">', xml)))
"""


def _arenas(setup: str, env: dict[str, str] | None = None) -> int:
    code = _PROBE.replace("SETUP", setup)
    base = {k: v for k, v in os.environ.items()
            if k != "MALLOC_ARENA_MAX" and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", code], env={**base, "PYTHONPATH": str(ROOT),
                         **(env or {})}, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_without_the_cap_each_thread_takes_an_arena() -> None:
    # the control: what the cap changes (and proof that the probe counts arenas)
    assert _arenas("") == 9


def test_tune_malloc_caps_them() -> None:
    setup = _ALLOCATOR + "; assert a.tune_malloc() == ['arena_max', 'mmap_threshold']"
    assert _arenas(setup) == 2


def test_the_cli_caps_them_before_parsing() -> None:
    # `tierproof --version` exits at parsing: main() has capped the arenas before it
    setup = ("import api.cli\n"
             "try:\n    api.cli.main(['--version'])\nexcept SystemExit:\n    pass")
    assert _arenas(setup) == 2


def test_the_operators_setting_wins() -> None:
    setup = _ALLOCATOR + "; assert a.tune_malloc() == ['mmap_threshold']"
    assert _arenas(setup, {"MALLOC_ARENA_MAX": "4"}) == 4


_MMAPPED = r"""
import ctypes, ctypes.util
SETUP
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = Info
big = bytearray(1 << 20)
del big  # freed: glibc's default raises its mmap threshold to 1 MB
before = libc.mallinfo2().hblks
held = bytearray(600_000)
print(libc.mallinfo2().hblks - before)
"""


def _mmapped(setup: str) -> int:
    base = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_",
                                                             "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", _MMAPPED.replace("SETUP", setup)],
                         env={**base, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_large_buffers_stay_mmapped_after_a_larger_one_was_freed() -> None:
    assert _mmapped("") == 0  # the control: glibc's sliding threshold
    assert _mmapped(_ALLOCATOR + "; a.tune_malloc()") == 1


_FRAGMENT = r"""
import time
SETUP
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
chunks = [bytearray(2000) for _ in range(100_000)]  # ~200 MB through malloc (> 512 bytes)
for c in chunks:
    c[::512] = b"x" * len(c[::512])  # touched: resident
pins = chunks[::64]
del chunks  # freed, but every 64th chunk pins the heap below it: nothing at the top to trim
before = rss_mb()
started = START
time.sleep(1.0)
print(started, round(before), round(rss_mb()))
"""


def _fragmented(start: str, env: dict[str, str] | None = None) -> tuple[str, int, int]:
    code = _FRAGMENT.replace("SETUP", _ALLOCATOR).replace("START", start)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_", "TIERPROOF_"))}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **(env or {})}, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    started, before, after = out.stdout.split()
    return started, int(before), int(after)


def test_trimming_gives_fragmented_free_memory_back() -> None:
    # the control: ~195 MB freed inside the heap stays resident without a trim
    started, before, after = _fragmented("None")
    assert before > 150 and after > before - 20, (before, after)
    # with the trimmer (every 0.1 s here) the freed pages go back to the system
    started, before, after = _fragmented("a.start_trimming(0.1)")
    assert started == "True" and before > 150 and after < before - 100, (before, after)


def test_trimming_is_off_with_zero() -> None:
    started, before, after = _fragmented("a.start_trimming()", {"TIERPROOF_MALLOC_TRIM_S": "0"})
    assert started == "False" and after > before - 20, (before, after)
