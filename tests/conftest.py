"""Fixtures shared by every test package."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from store.sqlite import SqliteStore


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    """A fresh SqliteStore in the test's temporary directory, closed afterwards."""
    # imported here so that collecting unrelated tests does not depend on the store
    from store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "tierproof.db")
    try:
        yield store
    finally:
        store.close()
