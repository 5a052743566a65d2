"""Small audit files beside a gateway's store (declared evidence, stop annotations): where each
lives, and opening one at its schema version. Each is its own SQLite file in WAL mode with
``synchronous=FULL`` (an audit row is never lost once acknowledged), migrated forward by its
numbered scripts."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

from config.errors import StoreError
from config.store import InfluxStoreSettings, StoreSettings

__all__ = ["open_sidecar", "sidecar_path"]


def sidecar_path(store: StoreSettings, kind: str) -> Path:
    """``<store file>.<kind>.db`` beside the embedded store's file, or beside the InfluxDB
    store's ``meta_path``."""
    base = Path(store.meta_path if isinstance(store, InfluxStoreSettings) else store.path)
    return base.with_name(base.name.removesuffix(".db") + f".{kind}.db")


def open_sidecar(path: Path, what: str, migrations: Mapping[int, str], version: int) -> sqlite3.Connection:
    """``path`` opened (made, with its directory, if missing) and migrated to ``version``;
    ``what`` names the file in errors. A StoreError for a newer schema or any SQLite error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # an audit row is never lost once acked
        have = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if have > version:
            conn.close()
            raise StoreError(f"{path.name}: {what} of schema {have}, newer than this "
                             f"tierproof's ({version}): upgrade tierproof")
        for v in range(have + 1, version + 1):
            conn.executescript(f"BEGIN IMMEDIATE; {migrations[v]} PRAGMA user_version = {v}; COMMIT;")
    except sqlite3.Error as exc:
        raise StoreError(f"{path.name}: cannot open the {what}: {exc}") from exc
    return conn
