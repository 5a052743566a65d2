"""The plant over OPC UA: an asyncua server with one OPC 40001-1-style machine per asset."""

from .server import (
    NAMESPACE_URI,
    OPCUA_SIGNALS,
    SECURITY_ALL,
    OpcUaPlantServer,
    SimUserManager,
    serve_opcua,
)

__all__ = [
    "NAMESPACE_URI",
    "OPCUA_SIGNALS",
    "SECURITY_ALL",
    "OpcUaPlantServer",
    "SimUserManager",
    "serve_opcua",
]
