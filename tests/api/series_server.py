"""A real app over real HTTP for the series, history, cursor and CSV tests: uvicorn in a
thread on a free loopback port, serving a real SQLite store, and a client with a read key."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from tests.helpers import free_port, key_headers, wait_for


@contextmanager
def serve(app: FastAPI, timeout: float = 60) -> Iterator[httpx.Client]:
    """``app`` (with its lifespan) on http://127.0.0.1:<free port>; a client of it sending a
    read key (made before the app starts: no key, no start)."""
    headers = key_headers(app.state.settings, "read")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 30, "the API to start")
        assert thread.is_alive(), "the API did not start"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout,
                          headers=headers) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
