"""A real app over real HTTP for the series, history, cursor and CSV tests: uvicorn in a
thread on a free loopback port, serving a real SQLite store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from tests.helpers import free_port, wait_for


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """``app`` (with its lifespan) on http://127.0.0.1:<free port>; its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 30, "the API to start")
        assert thread.is_alive(), "the API did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
