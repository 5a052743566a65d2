"""The plant over OPC UA: an asyncua server with one OPC 40001-1-style machine per asset."""

from .server import (
    EVENT_SEVERITY,
    NAMESPACE_URI,
    OPCUA_SIGNALS,
    SECURITY_ALL,
    OpcUaPlantServer,
    SimUserManager,
    serve_opcua,
    stop_message,
)

__all__ = [
    "EVENT_SEVERITY",
    "NAMESPACE_URI",
    "OPCUA_SIGNALS",
    "SECURITY_ALL",
    "OpcUaPlantServer",
    "SimUserManager",
    "serve_opcua",
    "stop_message",
]
