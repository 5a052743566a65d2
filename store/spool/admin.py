"""What ``tierproof spool list|replay|drop`` do, apart from printing: inspect the spool and the
quarantine of a configuration, send quarantined batches again, drop them on purpose."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config.errors import ConfigError, SinkRejected, SinkUnavailable
from config.settings import Settings
from config.store import InfluxStoreSettings, SpoolSettings

from ..base import Store
from .quarantine import Quarantine, QuarantineEntry, QuarantineStats, open_quarantine
from .queue import Spool, SpoolEntry, SpoolStats

__all__ = ["ReplayOutcome", "SpoolAdmin", "SpoolListing", "drop_quarantined", "list_spool",
           "replay_quarantined", "spool_settings"]

log = logging.getLogger("tierproof.store.spool")


def spool_settings(settings: Settings, source: str) -> SpoolSettings:
    """The spool settings of a configuration whose store has a spool (InfluxDB)."""
    if not isinstance(settings.store, InfluxStoreSettings):
        raise ConfigError(
            f"{source}: store.type is {settings.store.type!r}, which writes locally and has no spool; "
            "the spool belongs to store.type: influx",
            [(f"{source}: store.type", "spool commands need store.type: influx")],
        )
    return settings.store.spool


@dataclass(slots=True)
class SpoolListing:
    path: Path
    exists: bool
    entries: list[SpoolEntry]
    stats: SpoolStats | None
    quarantine: list[QuarantineEntry]
    quarantine_stats: QuarantineStats | None


def list_spool(s: SpoolSettings) -> SpoolListing:
    """Both contents, read-only: works while a gateway owns the spool."""
    path = Path(s.path)
    if not path.is_dir():
        return SpoolListing(path, False, [], None, [], None)
    sp = Spool(path, s.max_bytes, s.when_full, readonly=True)
    try:
        entries, stats = sp.entries(), sp.stats()
    finally:
        sp.close()
    q = open_quarantine(s)
    return SpoolListing(path, True, entries, stats, q.entries(), q.stats())


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    id: int
    points: int
    ok: bool
    status: int | None = None
    reason: str = ""


def _ids(q: Quarantine, qid: int | None) -> list[int]:
    if qid is not None:
        q.load(qid)  # NotFoundError naming the id and the directory
        return [qid]
    return [e.id for e in q.entries()]


def replay_quarantined(s: SpoolSettings, sink: Store, qid: int | None) -> list[ReplayOutcome]:
    """Send quarantined batches (one, or all in id order) to ``sink``. A batch the sink takes
    leaves the quarantine; one it refuses again stays, with the new reason. Stops at the first
    :class:`SinkUnavailable` (raised, after what was done so far is saved)."""
    q = open_quarantine(s)
    out: list[ReplayOutcome] = []
    for i in _ids(q, qid):
        entry, batch = q.load(i)
        try:
            sink.write(batch)
        except SinkRejected as exc:
            reason = exc.reason or str(exc)
            q.refused_again(i, exc.status, reason)
            out.append(ReplayOutcome(i, entry.points, False, exc.status, reason))
            continue
        except SinkUnavailable as exc:
            raise SinkUnavailable(
                f"sink unavailable while replaying quarantined batch {i} ({exc}); "
                f"{sum(o.ok for o in out)} batches were replayed before, the rest stay quarantined",
                exc.retry_after_s,
            ) from exc
        q.replayed(i)
        out.append(ReplayOutcome(i, entry.points, True))
    return out


def drop_quarantined(s: SpoolSettings, qid: int | None) -> list[QuarantineEntry]:
    """Delete quarantined batches (one, or all); each is counted and logged."""
    q = open_quarantine(s)
    return [q.drop(i) for i in _ids(q, qid)]


@dataclass(frozen=True, slots=True)
class SpoolAdmin:
    """The spool of one configuration, as ``tierproof spool list|replay|drop`` use it.
    ``open_sink`` opens the backend alone, without the spool in front: ``replay`` sends
    quarantined batches there (``store.open_spool_admin`` builds one for a configuration)."""

    settings: SpoolSettings
    open_sink: Callable[[], Store]

    def listing(self) -> SpoolListing:
        return list_spool(self.settings)

    def drop(self, qid: int | None) -> list[QuarantineEntry]:
        return drop_quarantined(self.settings, qid)

    def replay(self, qid: int | None) -> list[ReplayOutcome]:
        sink = self.open_sink()
        try:
            return replay_quarantined(self.settings, sink, qid)
        finally:
            sink.close()
