"""Helpers shared by tests (a module, not a conftest, so tests can import them)."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except (httpx.HTTPError, AssertionError, KeyError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last error: {last!r}")


def on_free_ports(config: dict[str, Any]) -> dict[str, Any]:
    """A parsed configuration whose devices listen on free ports (Modbus port, OPC UA endpoint).
    MQTT devices are left alone: without ``broker`` the demo embeds one on a free port."""
    for d in config["devices"]:
        if d["protocol"] == "opcua":
            d["endpoint"] = f"opc.tcp://127.0.0.1:{free_port()}/tierproof/simulator"
        elif d["protocol"] == "modbus":
            d["port"] = free_port()
    return config
