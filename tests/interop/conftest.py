"""Fixtures of the interop suite: third-party peers started as subprocesses."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from peers import NodePeer

# --------------------------------------------------------------------------- Sparkplug B / MQTT

StartTahu = Callable[..., NodePeer]


@pytest.fixture
def tahu() -> Iterator[StartTahu]:
    """``tahu(serverUrl=..., groupId=..., edgeNode=..., devices=[...], publishDeath=True)``
    starts ``node/tahu_edge.js`` (Eclipse Tahu's JavaScript edge client, npm
    ``sparkplug-client``) and returns it once connected and born; every node started is
    killed after the test."""
    started: list[NodePeer] = []

    def start(**options: Any) -> NodePeer:
        peer = NodePeer("tahu_edge.js", json.dumps(options))
        started.append(peer)
        peer.start()
        return peer

    yield start
    for peer in started:
        peer.stop()
