"""OPC UA collector: subscriptions or batched reads, browse-path discovery, and the security
and connection diagnosis around them (see ``README.md``)."""

from __future__ import annotations

from .browse import MAX_BROWSE_NODES, discover
from .driver import OpcUaCollector, OpcUaStats, discover_tags
from .security import thumbprint

__all__ = ["MAX_BROWSE_NODES", "OpcUaCollector", "OpcUaStats", "discover", "discover_tags", "thumbprint"]
