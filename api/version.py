"""The installed distribution's version: one source (pyproject.toml) for the CLI and the API."""

from __future__ import annotations

from importlib import metadata

__all__ = ["VERSION"]

try:
    VERSION: str = metadata.version("tierproof")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    VERSION = "0+unknown"
