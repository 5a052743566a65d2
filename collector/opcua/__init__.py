"""OPC UA collector: subscriptions or batched reads, browse-path discovery, and the security
and connection diagnosis around them (see ``README.md``)."""

from __future__ import annotations

from .driver import MAX_BROWSE_NODES, OpcUaCollector, discover, discover_tags, thumbprint

__all__ = ["MAX_BROWSE_NODES", "OpcUaCollector", "discover", "discover_tags", "thumbprint"]
