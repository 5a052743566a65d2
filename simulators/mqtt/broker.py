"""An MQTT broker inside the demo's own process (amqtt), so `make demo` needs no Mosquitto.

Tests use Debian's Mosquitto instead (``tests/mosquitto.py``): production brokers are
Mosquitto, EMQX or HiveMQ, and the collector is held to those. This broker is for the demo
only: anonymous, plain TCP, on 127.0.0.1 by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from amqtt.broker import Broker
from amqtt.errors import BrokerError

from ..ports import free_port

__all__ = ["embedded_broker"]

# amqtt's default plugins include BrokerSysPlugin, which warns (DeprecationWarning) about its
# psutil dependency on every start; the demo needs anonymous access and nothing else
_PLUGINS: dict[str, Any] = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}


@contextlib.asynccontextmanager
async def embedded_broker(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run an anonymous MQTT 3.1.1 broker on ``host:port`` (0: a free port) and yield its
    URL, ``mqtt://host:port``; it stops when the block is left."""
    port = port or free_port(host)
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": _PLUGINS,
        }
    )
    try:
        await broker.start()
    except BrokerError as exc:
        raise OSError(f"embedded MQTT broker cannot listen on {host}:{port}: {exc}") from exc
    try:
        yield f"mqtt://{host}:{port}"
    finally:
        await broker.shutdown()
