"""The embedded store: SQLite (stdlib ``sqlite3``), one bulk write per batch."""

from .store import SCHEMA_VERSION, SqliteStore

__all__ = ["SCHEMA_VERSION", "SqliteStore"]
