"""Benchmark: what api.auth's middleware costs per request, alone (a trivial ASGI app behind
it), with keys on (a key looked up among 51 in the keys file: a stat of the file, a SHA-256,
a constant-time compare) and off (passed through).

    .venv/bin/python bench/bench_auth.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.auth import AuthMiddleware, KeyFile, KeyRing


async def ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tierproof-auth-") as tmp:
        keys = KeyFile(Path(tmp) / "api_keys.json")
        for i in range(50):
            keys.create(f"k{i}", "read")
        _, key = keys.create("bench", "read")
        ring = KeyRing(keys.path)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request"}

        async def send(message: dict[str, Any]) -> None:
            pass

        scope = {"type": "http", "method": "GET", "path": "/api/v1/kpis",
                 "headers": [(b"x-api-key", key.encode())]}
        for required in (False, True):
            mw = AuthMiddleware(ok, ring, required=required)
            t0 = time.perf_counter()
            for _ in range(n):
                await mw(dict(scope), receive, send)
            us = (time.perf_counter() - t0) / n * 1e6
            print(f"api.auth.required={str(required).lower():5}: {us:6.1f} us per request "
                  f"({n} requests, 51 keys in the file)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=20_000)
    asyncio.run(main(p.parse_args().requests))
