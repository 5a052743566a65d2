"""Free ports for the simulators' servers."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port(host: str) -> int:
    """A port free on ``host`` now. The simulators' servers need theirs before they start:
    their URL is handed out (OPC UA endpoint, MQTT broker URL) before clients connect."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
