"""Writes an evidence pack (``docs/evidence.md``): the tier assessment, every input it was
computed from, the configuration and declared evidence in force, and a signed manifest.

A composition root: it reads the store through ``KpiService`` and writes files; every number
in the pack is computed by the same code the API answers with (``api.assessment.assess``,
``KpiService.asset_result`` over ``kpi.time_elements``), never by a second implementation.

The hourly rows are the assessment's own parts: each local day of a window (the unit the
assessment resamples, clipped to the window) is cut at every hour, and each hour is computed
as a part of that day (``context_start_ns`` = the day's start, ``kpi.time_elements``), so the
hours of an asset-day add up to that day's elements exactly.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import shutil
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from config.errors import KpiError
from config.fingerprint import REDACTED
from config.loader import shipped_config
from config.redact import is_secret_field, redact_url
from config.settings import Asset, Settings
from config.signals import CANONICAL, Role, canonical_code
from config.tiers import TierCriteria
from config.times import to_ns
from kpi import ALGORITHM_VERSION, asset_gaps, gap_intervals, planned_intervals
from kpi.steps import UNKNOWN, Step, combine
from store.base import Gap, TagRecord

from ..assessment import assess, local_days
from ..flight import json_body
from ..service import KpiService
from ..version import VERSION
from . import layout as L
from .keys import public_pem, public_raw_b64
from .losses import LOSS_ROLES, event_assets, lookback_span, write_losses
from .report import render_report

__all__ = ["KPI_ROLES", "Windows", "evidence_zip", "tags_by_asset", "write_pack"]

#: the roles KPIs are computed from (``KpiService.asset_result`` reads these)
KPI_ROLES: Final = (Role.STATE, Role.MODE, Role.CHANNEL_MODE, Role.TOTAL_COUNT, Role.GOOD_COUNT,
                    Role.REJECT_COUNT, Role.ENERGY_KWH)
_HOUR: Final = 3_600_000_000_000
#: what a secret reads as in the pack's config.yaml
SECRET: Final = "***"


@dataclass(frozen=True, slots=True)
class Windows:
    """The assessment's windows in ns: (label, start, end), baseline first when there is one."""

    spans: tuple[tuple[str, int, int], ...]

    @classmethod
    def of(cls, assessment: dict[str, Any]) -> Windows:
        spans = []
        for label, key in (("baseline", "baseline_window"), ("current", "window")):
            w = assessment.get(key)
            if w:
                spans.append((label, _instant(w["from"]), _instant(w["to"])))
        return cls(tuple(spans))


def _instant(text: str) -> int:
    """An instant of the assessment's ``window`` (ISO 8601 with Z) in ns."""
    return to_ns(datetime.fromisoformat(text))


def tags_by_asset(tags: Iterable[TagRecord], roles_of: Sequence[Role] = KPI_ROLES
                  ) -> dict[str, dict[Role, TagRecord]]:
    """asset -> role -> its KPI tag (or one of ``roles_of``), as ``KpiService`` picks them
    (the first of each role)."""
    roles = set(roles_of)
    out: dict[str, dict[Role, TagRecord]] = {}
    for t in tags:
        try:
            role = Role(t.role)
        except ValueError:
            continue
        if role in roles:
            out.setdefault(t.asset, {}).setdefault(role, t)
    return out


def redacted_config(settings: Settings) -> dict[str, Any]:
    """The settings as validated (the file's meaning plus the declared items in force: what
    the config fingerprint hashes), every secret ``***`` and every URL's password too."""

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: SECRET if is_secret_field(str(k)) and x is not None else walk(x)
                    for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if v == REDACTED:  # any other SecretStr (a configured API key), as pydantic renders it
            return SECRET
        return redact_url(v) if isinstance(v, str) else v

    out: dict[str, Any] = walk(settings.as_validated().model_dump(mode="json"))
    return out


def day_cells(start_ns: int, end_ns: int, tz: ZoneInfo) -> list[tuple[int, list[tuple[int, int]]]]:
    """The window's local days (clipped to it), each as (its start, its cells): the day cut
    at every whole hour (UTC) inside it. A cell is one hourly row."""
    out = []
    for _, a, b in local_days(_ns_dt(start_ns), _ns_dt(end_ns), tz):
        a_ns, b_ns = to_ns(a), to_ns(b)
        edges = [a_ns, *range(-(-a_ns // _HOUR) * _HOUR, b_ns, _HOUR), b_ns]
        edges = sorted(set(edges))
        out.append((a_ns, list(itertools.pairwise(edges))))
    return out


def _ns_dt(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


def _write_csv(path: Path, rows: Iterable[Sequence[Any]], header: Sequence[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _num(x: float | int | None) -> str:
    """A number exactly (repr round-trips a float); empty for None."""
    if x is None:
        return ""
    return repr(int(x)) if isinstance(x, int | np.integer) else repr(float(x))


def hourly_rows(service: KpiService, windows: Windows) -> Iterator[list[str]]:
    """One row per asset per cell of each window (``day_cells``), each cell computed as a
    part of its local day from raw samples."""
    settings = service.settings
    tz = ZoneInfo(settings.calendar.timezone)
    by_asset = tags_by_asset(service.store.tags())
    for label, ws, we in windows.spans:
        for asset in settings.assets:
            tags = by_asset.get(asset.path, {})
            ids = [t.tag_id for t in tags.values()]
            for day_start, cells in day_cells(ws, we, tz):
                series = service.store.read_many(ids, day_start, cells[-1][1], prior=True) if ids else {}
                for a, b in cells:
                    e = service.asset_result(asset, a, b, tags, context_start_ns=day_start,
                                             series=series).elements
                    yield [asset.path, label, L.format_ns(a),
                           *(_num(getattr(e, f)) for f in L.ELEMENT_FIELDS)]


def _merged(spans: Sequence[tuple[str, int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for _, a, b in sorted(spans, key=lambda s: s[1]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def sample_rows(service: KpiService, windows: Windows) -> Iterator[list[str]]:
    """Every KPI tag's samples in the windows, with the last one before each window's start,
    sorted by tag then time; the stop_reason tags' too, and for an asset with OPC UA events
    from a day before the current window (``api.evidence.losses``)."""
    assets = {a.path for a in service.settings.assets}
    tags = sorted((t for by_role in tags_by_asset(service.store.tags(), KPI_ROLES + LOSS_ROLES).values()
                   for t in by_role.values() if t.asset in assets), key=lambda t: t.path)
    ranges = _merged(windows.spans)
    extra = lookback_span(windows)
    with_events = event_assets(service.store, service.settings)
    wider = _merged([*windows.spans, extra]) if extra else ranges
    for t in tags:
        last = None  # the end of the range read before: its samples are written already
        for a, b in wider if t.asset in with_events else ranges:
            s = service.store.read(t.tag_id, a, b, prior=True)
            keep = np.ones(len(s.ts_ns), bool)
            if last is not None and len(s.ts_ns) and s.ts_ns[0] < a:
                keep[0] = s.ts_ns[0] >= last
            for ts, v, q in zip(s.ts_ns[keep], s.value[keep], s.quality[keep], strict=True):
                yield [t.path, t.asset, t.role, L.format_ns(int(ts), nanos=True), repr(float(v)), str(int(q))]
            last = b


def tag_rows(service: KpiService) -> list[list[str]]:
    """The tags of the pack's samples (``sample_rows``: KPI and stop-reason tags) that
    ``config.yaml`` does not declare: a central tierproof has no devices and learns its tags,
    roles and enumerations from the gateways' tag register in the store. Empty for a
    gateway's own pack."""
    from ..gateway import tag_records

    declared = {t.path for t in tag_records(service.settings)}
    assets = {a.path for a in service.settings.assets}
    tags = sorted((t for by_role in tags_by_asset(service.store.tags(), KPI_ROLES + LOSS_ROLES).values()
                   for t in by_role.values() if t.asset in assets and t.path not in declared),
                  key=lambda t: t.path)
    return [[t.path, t.asset, t.role, t.device, t.protocol, t.unit,
             "" if t.enum is None else json.dumps({str(k): t.enum[k] for k in sorted(t.enum)},
                                                  ensure_ascii=False, separators=(",", ":"))]
            for t in tags]


def _asset_gaps(service: KpiService, asset: Asset, tags: dict[Role, TagRecord], a: int, b: int) -> list[Gap]:
    devices = sorted({t.device for t in tags.values()})
    return asset_gaps((g for d in devices for g in service.store.gaps(d, a, b)), asset.path)


def _reach_back(service: KpiService, tags: dict[Role, TagRecord], start_ns: int) -> int:
    """The earliest of the asset's step samples in force at ``start_ns`` (or ``start_ns``)."""
    since = start_ns
    for role in (Role.STATE, Role.MODE, Role.CHANNEL_MODE):
        if (t := tags.get(role)) is not None:
            s = service.store.read(t.tag_id, start_ns, start_ns + 1, prior=True)
            if len(s.ts_ns):
                since = min(since, int(s.ts_ns[0]))
    return since


def gap_rows(service: KpiService, windows: Windows) -> Iterator[list[str]]:
    """Each gap that counts against an asset in the windows (a device-wide gap once per asset
    of the device), by asset then start."""
    by_asset = tags_by_asset(service.store.tags())
    extra = lookback_span(windows)
    with_events = event_assets(service.store, service.settings)
    for asset in service.settings.assets:
        tags = by_asset.get(asset.path, {})
        seen: dict[tuple[int, str], Gap] = {}
        spans = [*windows.spans, extra] if extra and asset.path in with_events else windows.spans
        # a window reads gaps back to the step samples in force at its start (kpi/4): a gap
        # between such a sample and the start makes it unknown, so the pack holds that gap too
        spans = [(label, _reach_back(service, tags, a), b) for label, a, b in spans]
        for a, b in _merged(spans):
            for g in _asset_gaps(service, asset, tags, a, b):
                seen.setdefault((g.gap_id, g.device), g)
        for g in sorted(seen.values(), key=lambda g: (g.start_ns, g.device, g.gap_id)):
            yield [asset.path, g.device, L.format_ns(g.start_ns),
                   "" if g.end_ns is None else L.format_ns(g.end_ns), g.reason]


def planned_rows(settings: Settings, windows: Windows) -> Iterator[list[str]]:
    """The calendar's planned busy intervals in each window, for every asset (one calendar)."""
    for label_a, a, b in windows.spans:
        del label_a
        starts, ends = planned_intervals(settings.calendar, a, b)
        for asset in settings.assets:
            for s, e in zip(starts, ends, strict=True):
                yield [asset.path, L.format_ns(int(s)), L.format_ns(int(e))]


def _name(role: Role, code: int) -> str:
    if code == UNKNOWN:
        return ""
    member = CANONICAL[role](code)
    return "None" if member.name == "NoMode" else member.name


def _step(service: KpiService, tag: TagRecord | None, a: int, b: int) -> Step:
    """A step tag's canonical codes in [a, b) with the one before, as the KPIs map them."""
    if tag is None:
        return Step(np.empty(0, np.int64), np.empty(0, np.int64))
    s = service.store.read(tag.tag_id, a, b, prior=True)
    return Step.from_samples(s.ts_ns, s.value, s.quality, KpiService._lut(tag))


def state_rows(service: KpiService, windows: Windows) -> Iterator[list[str]]:
    """Each asset's state timeline in each window: the intervals over which its canonical
    state and mode are constant (empty: unknown), as the KPIs see them (gaps make both
    unknown; a configured default_mode holds when there is no mode tag)."""
    by_asset = tags_by_asset(service.store.tags())
    for _, ws, we in windows.spans:
        for asset in service.settings.assets:
            tags = by_asset.get(asset.path, {})
            gaps = gap_intervals(_asset_gaps(service, asset, tags, ws, we), we)
            mode = _step(service, tags.get(Role.MODE), ws, we)
            if Role.MODE not in tags and asset.default_mode is not None:
                mode = Step.constant(canonical_code(Role.MODE, asset.default_mode), ws, gaps)
            iv = combine([_step(service, tags.get(Role.STATE), ws, we), mode], ws, we, gaps)
            st, md = iv.codes
            if not len(st):
                continue
            change = np.flatnonzero((st[1:] != st[:-1]) | (md[1:] != md[:-1])) + 1
            firsts = np.concatenate(([0], change))
            lasts = np.concatenate((change - 1, [len(st) - 1]))
            for i, j in zip(firsts, lasts, strict=True):
                yield [asset.path, L.format_ns(int(iv.start[i])), L.format_ns(int(iv.end[j])),
                       _name(Role.STATE, int(st[i])), _name(Role.MODE, int(md[i]))]


def declared_doc(settings: Settings, declared: Any | None) -> dict[str, Any]:
    """Every declared item in force with its version and who supplied it when, and the audit
    trail of every version supplied through the API (``api.declared``)."""
    from ..declared import ITEMS, config_versions, dump, value_of

    if declared is None:
        versions = config_versions()
        items = {i: {**versions[i], "value": dump(i, value_of(settings, i))} for i in ITEMS}
        return {"items": items, "audit": [], "rejected": {}}
    versions = declared.versions()
    items = {i: {**versions[i], "value": declared.value(i)} for i in ITEMS}
    return {"items": items, "audit": declared.audit(None, None, None),
            "rejected": dict(declared.rejected)}


def write_pack(
    out: Path,
    settings: Settings,
    service: KpiService,
    key: Ed25519PrivateKey,
    *,
    declared: Any | None = None,
    tier: str | None = None,
    from_: str | None = None,
    to: str | None = None,
    baseline_from: str | None = None,
    baseline_to: str | None = None,
    now: datetime | None = None,
    criteria_path: Path | None = None,
) -> dict[str, Any]:
    """Write the pack into the directory ``out`` (made; it must be empty if it exists) and
    return its manifest. ``declared``: the app's ``DeclaredEvidence`` (its audit trail goes
    into ``declared.json``); None: the configuration's items, version 0."""
    from config import load_tiers

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise KpiError(f"{out}: exists and is not an empty directory: an evidence pack is "
                       "written into a new directory (files left there would be unsigned)")
    criteria_file = criteria_path or shipped_config("tiers.yaml")
    criteria: TierCriteria = load_tiers(criteria_file)
    now = now or datetime.now(UTC)
    # written beside ``out`` and renamed into place when whole: a failed pack leaves nothing
    work = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    (work / "inputs").mkdir(parents=True)
    try:
        manifest = _write(work, settings, service, key, declared, criteria_file, criteria, now,
                          dict(tier=tier, from_=from_, to=to, baseline_from=baseline_from,
                               baseline_to=baseline_to))
        if out.exists():
            out.rmdir()  # empty (checked above)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _write(out: Path, settings: Settings, service: KpiService, key: Ed25519PrivateKey,
           declared: Any | None, criteria_file: Path, criteria: TierCriteria, now: datetime,
           args: dict[str, Any]) -> dict[str, Any]:
    """Every file of the pack into ``out``, the CSVs row by row (a month of samples is not
    held in memory), then the signed manifest."""
    with service.snapshot():  # every read of the pack sees one state of the store
        result = assess(settings, service, criteria, now=now, **args)
        windows = Windows.of(result)
        (out / L.ASSESSMENT).write_bytes(json_body(result))
        del result
        _write_csv(out / L.HOURLY, hourly_rows(service, windows), L.HOURLY_COLUMNS)
        _write_csv(out / L.SAMPLES, sample_rows(service, windows), L.SAMPLES_COLUMNS)
        _write_csv(out / L.STATES, state_rows(service, windows), L.STATES_COLUMNS)
        _write_csv(out / L.GAPS, gap_rows(service, windows), L.GAPS_COLUMNS)
        if tags := tag_rows(service):  # a central tierproof's: verify needs their mapping
            _write_csv(out / L.TAGS, tags, L.TAGS_COLUMNS)
        write_losses(out, service, windows)
    _write_csv(out / L.PLANNED, planned_rows(settings, windows), L.PLANNED_COLUMNS)
    config = yaml.safe_dump(redacted_config(settings), sort_keys=False, allow_unicode=True).encode()
    (out / L.CONFIG).write_bytes(config)
    (out / L.CRITERIA).write_bytes(criteria_file.read_bytes())
    (out / L.DECLARED).write_bytes(_json(declared_doc(settings, declared)))
    created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    (out / L.VERSIONS).write_bytes(_json({
        "criteria_version": criteria.version, "algorithm_version": ALGORITHM_VERSION,
        "config_sha256": hashlib.sha256(config).hexdigest(), "tierproof_version": VERSION,
        "created": created}))
    (out / L.PUBLIC_KEY).write_bytes(public_pem(key.public_key()))
    (out / L.REPORT).write_text(render_report(out), encoding="utf-8")
    return sign_pack(out, key, created)


def _json(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def pack_files(root: Path) -> list[str]:
    """Every file under ``root`` but the manifest and its signature, as sorted relative paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.relative_to(root).as_posix() not in L.UNSIGNED)


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sign_pack(out: Path, key: Ed25519PrivateKey, created: str) -> dict[str, Any]:
    """Hash every file of the pack into ``manifest.json`` and sign its bytes (``manifest.sig``)."""
    import base64

    manifest = {"format": L.FORMAT,
                "files": {rel: sha256_file(out / rel) for rel in pack_files(out)},
                "public_key": public_raw_b64(key.public_key()), "created": created}
    data = _json(manifest)
    (out / L.MANIFEST).write_bytes(data)
    (out / L.SIGNATURE).write_bytes(base64.b64encode(key.sign(data)) + b"\n")
    return manifest


def evidence_zip(pack: Path, dest: Path) -> Path:
    """The pack directory as one zip file ``dest`` (paths relative to the pack)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(pack.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(pack).as_posix())
    return dest
