"""The API benchmarks' server: a uvicorn subprocess serving a config's store without collecting."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
#: the API key the benchmarks' clients send: the API runs with its keys on, as deployed (the
#: key is given in the configuration the benchmark writes, ``api.auth.keys``)
BENCH_KEY = "bench-key-" + "0123456789abcdef" * 2
HEADERS = {"X-API-Key": BENCH_KEY}


def with_key(data: dict[str, Any]) -> dict[str, Any]:
    """A configuration's data with :data:`BENCH_KEY` among its API keys."""
    api = data.setdefault("api", {})
    api["auth"] = {**api.get("auth", {}), "keys": [{"name": "bench", "scope": "read", "key": BENCH_KEY}]}
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(code: str, cfg: Path, what: str = "server", timeout_s: float = 120.0
           ) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Runs ``python -c code CFG PORT`` on a free port until ``/api/v1/health`` answers;
    yields the process and the port, and stops it on exit."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", code, str(cfg), str(port)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                # answering is enough: 503 is a degraded gateway (e.g. a device not yet connected)
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"the {what} did not start")
            time.sleep(0.2)
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(30)
