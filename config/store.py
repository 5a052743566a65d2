"""Store settings: the embedded SQLite store, InfluxDB and its store-and-forward spool."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from .base import Backoff, Model
from .bounds import RetentionDays, Timeout_s, ZeroOrInterval_s
from .redact import redact_url, url_credentials_error


class SqliteStoreSettings(Model):
    type: Literal["sqlite"] = "sqlite"
    path: str = "data/tierproof.db"
    retention_days: RetentionDays | None = Field(default=None, description="None keeps forever")
    synchronous: Literal["normal", "full"] = "normal"
    compact_every: int = Field(
        default=64, ge=1, description="ingest batches merged into per-tag chunks at a time"
    )
    group_max_points: int = Field(
        default=50_000, ge=1,
        description="group commit: batches that arrive while a store write is in progress are "
        "written together by the next one (one transaction / POST / fdatasync), up to this many "
        "points per write",
    )


class SpoolSettings(Model):
    """Store-and-forward: where batches wait while a remote store cannot take them."""

    path: str = "data/spool"
    max_bytes: int = Field(default=1 << 30, ge=1 << 16, description="bound of the spool on disk")
    when_full: Literal["drop_oldest", "refuse_newest"] = "drop_oldest"
    backoff: Backoff = Field(default_factory=lambda: Backoff(initial_s=0.5, max_s=60.0))
    probe_interval_s: float = Field(
        default=2.0, ge=0.1, le=300.0,
        description="while the sink does not answer at all, ask its /ping this often and send "
        "the spool as soon as it answers (instead of waiting out the backoff)",
    )


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name, an address, an IPv6 address in brackets) is this machine by
    its name or address (no lookup: a name other than ``localhost`` counts as another
    machine)."""
    host = host.strip("[]").lower()
    if host in ("localhost", "ip6-localhost") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class InfluxStoreSettings(Model):
    """InfluxDB as the store. ``api: v2`` writes with influxdb-client to InfluxDB 2.x/3.x and
    1.8+ (url, token, org, bucket); ``api: v1`` posts to ``/write`` of InfluxDB 1.x up to 1.7
    (database, retention_policy, username, password). Reads are InfluxQL on ``/query``."""

    type: Literal["influx"]
    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v2"
    # v2
    token: SecretStr | None = None
    org: str | None = None
    bucket: str | None = None
    # v1 (and the database/retention policy InfluxQL reads use on 2.x/3.x via a DBRP mapping)
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    measurement: str = Field(default="tierproof", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    batch_size: int = Field(default=5000, ge=1)
    group_max_points: int = Field(
        default=50_000, ge=1,
        description="group commit: batches that arrive while a store write is in progress are "
        "written together by the next one (POSTs / spool append), up to this many points per "
        "write; the collectors wait once twice this many points are not yet written",
    )
    flush_interval_s: ZeroOrInterval_s = Field(
        default=0.0,
        description="0: every batch is posted when it is written; > 0: batches are gathered in the "
        "(durable) spool and posted together every flush_interval_s, or once batch_size points wait",
    )
    posts_in_flight: int = Field(
        default=4, ge=1, le=16,
        description="POSTs one store write sends at once: its points split by series, each "
        "series in one of them in order (a large write only; 1: one POST at a time)",
    )
    timeout_s: Timeout_s = 10.0
    gzip: Literal[True, False, "auto"] = Field(
        default="auto",
        description="compress request bodies and ask for compressed answers; auto: on unless the "
        "url's host is a loopback address (localhost, 127.0.0.0/8, ::1), where compressing only "
        "costs both processes CPU",
    )
    verify_tls: bool = True
    read_cache_samples: int = Field(
        default=1_000_000, ge=0,
        description="samples read back that a gateway keeps, exact by its own writes, so that a "
                    "KPI call asks InfluxDB only for what changed (docs/influxdb.md); 0: off",
    )
    meta_path: str = Field(
        default="data/tierproof-meta.db",
        description="local file keeping the tag ids, gaps and heartbeats of this gateway",
    )
    spool: SpoolSettings = Field(default_factory=SpoolSettings)

    @property
    def compress(self) -> bool:
        """Whether requests and answers are gzipped: ``gzip``, with ``auto`` resolved by the url."""
        return (not is_loopback_host(urlsplit(self.url).hostname or "")) if self.gzip == "auto" else self.gzip

    @field_validator("gzip", mode="before")
    @classmethod
    def _gzip(cls, v: object) -> object:
        """A yes/no word in a string (an environment override, a quoted YAML value) as a bool."""
        if not isinstance(v, str):
            return v
        word = v.strip().lower()
        return {"true": True, "yes": True, "on": True, "1": True,
                "false": False, "no": False, "off": False, "0": False}.get(word, word)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        creds = url_credentials_error(v, "use username/password (v1) or token (v2)")
        if creds is not None:
            raise creds
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{redact_url(v)!r} is not an http:// or https:// URL")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _credentials(self) -> InfluxStoreSettings:
        if self.api == "v2":
            missing = [f for f in ("token", "org", "bucket") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"api v2 needs {', '.join(missing)}")
        else:
            if self.database is None:
                raise ValueError("api v1 needs database")
            if (self.username is None) != (self.password is None):
                raise ValueError("username and password go together")
        return self


StoreSettings = Annotated[SqliteStoreSettings | InfluxStoreSettings, Field(discriminator="type")]
