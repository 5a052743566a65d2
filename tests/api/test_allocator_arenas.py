"""glibc's malloc arenas are capped at api.allocator.ARENAS by ``tierproof`` (issue 13).

Each case runs a fresh interpreter: 8 threads each allocate and hold 200 kB (through
``malloc``: Python hands allocations above 512 bytes to it), then glibc's ``malloc_info`` is
read, whose XML has one ``<heap nr=...>`` per arena. A thread's first malloc takes a new
arena while the cap allows, so without a cap the count is 9 (the main arena and one per
thread; glibc allows 8 per core), with it 2. Real glibc, no fakes; skipped elsewhere.
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


def test_limit_arenas_caps_them() -> None:
    assert _arenas("import api.allocator as a; assert a.limit_arenas() is True") == 2


def test_the_cli_caps_them_before_parsing() -> None:
    # `tierproof --version` exits at parsing: main() has capped the arenas before it
    setup = ("import api.cli\n"
             "try:\n    api.cli.main(['--version'])\nexcept SystemExit:\n    pass")
    assert _arenas(setup) == 2


def test_the_operators_setting_wins() -> None:
    setup = "import api.allocator as a; assert a.limit_arenas() is False"
    assert _arenas(setup, {"MALLOC_ARENA_MAX": "4"}) == 4
