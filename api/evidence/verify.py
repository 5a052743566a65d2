"""``tierproof verify``: checks an evidence pack from the pack alone (``docs/evidence.md``).

1. **Integrity**: ``manifest.sig`` is the Ed25519 signature of ``manifest.json``'s bytes under
   the manifest's ``public_key`` (with ``--public-key``: that key must be the pack's); every
   file of the pack is listed in the manifest with its SHA-256, and every listed file is there.
2. **Recomputation**, with the same code the gateway computes with (``kpi/`` through
   ``KpiService`` and ``api.assessment.assess``, never a second implementation), over a
   temporary embedded store filled from the pack's inputs alone: the tags and their mapping
   from ``config.yaml``, ``inputs/samples.csv``, ``inputs/gaps.csv``. Then ``planned.csv``
   must be the calendar's planned busy time, ``states.csv`` the state timeline, every row of
   ``hourly.csv`` the time elements of its hour as a part of its local day, the hours of each
   asset-day must add up to that day's elements (the unit the assessment resamples), and the
   assessment recomputed with the recorded windows and bootstrap settings must equal
   ``assessment.json`` (numbers within 1e-9 relative). Two things are taken as recorded, not
   recomputed, as the pack does not hold the whole history: ``history.first_sample`` and the
   coverage of that span (``history.coverage``); ``history.years`` and its verdicts are
   recomputed from them.

The first mismatch raises ``Mismatch`` naming the file, the row or field, what was expected
(recomputed) and what was found.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import json
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from config.errors import ConfigError, TierproofError
from config.loader import load_tiers, settings_from_dict
from config.settings import Settings
from config.signals import Role
from config.times import to_ns
from kpi import TimeElements
from store.base import TagRecord
from store.batch import Batch
from store.sqlite import SqliteStore

from ..assessment import assess
from ..gateway import tag_records
from ..service import KpiService
from . import layout as L
from .keys import EvidenceKeyError, public_raw_b64, read_public_key, signature_ok
from .losses import restore_inputs, verify_losses
from .pack import Windows, day_cells, hourly_rows, planned_rows, sha256_file, state_rows
from .report import render_report

__all__ = ["KEY_PLACEHOLDER", "REL_TOL", "Mismatch", "first_difference", "load_pack_config", "verify_pack"]

#: numbers recomputed by verify equal the pack's within this relative tolerance (an absolute
#: one of the same size for numbers below 1: sums taken in another order differ in the last bits)
REL_TOL: Final = 1e-9


#: samples written to the temporary store at once
_BATCH: Final = 200_000


class Mismatch(TierproofError):
    """The pack does not verify: ``file``, where in it, and what was expected vs found."""

    def __init__(self, file: str, where: str, reason: str) -> None:
        self.file, self.where, self.reason = file, where, reason
        super().__init__(f"{file}: {where}: {reason}" if where else f"{file}: {reason}")


def _close(a: float, b: float) -> bool:
    if a == b:
        return True
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return False
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b), 1.0)


def _same(expected: Any, found: Any) -> bool:
    if isinstance(expected, bool) or isinstance(found, bool):
        return expected is found
    if isinstance(expected, int | float) and isinstance(found, int | float):
        return _close(float(expected), float(found))
    return bool(expected == found)


def first_difference(expected: Any, found: Any, path: str) -> tuple[str, Any, Any] | None:
    """The first place where ``found`` differs from ``expected`` (path, expected, found)."""
    if isinstance(expected, dict) and isinstance(found, dict):
        for k in expected:
            if k not in found:
                return f"{path}.{k}", expected[k], "(absent)"
            d = first_difference(expected[k], found[k], f"{path}.{k}")
            if d is not None:
                return d
        for k in found:
            if k not in expected and not (k == "rollups" and ".assets." in f"{path}."):
                # an asset's "rollups" says how the gateway read it (roll-up rows or raw
                # samples), not what it computed; verify always reads raw samples
                return f"{path}.{k}", "(absent)", found[k]
        return None
    if isinstance(expected, list) and isinstance(found, list):
        for i, (e, f) in enumerate(zip(expected, found, strict=False)):
            d = first_difference(e, f, f"{path}[{i}]")
            if d is not None:
                return d
        if len(expected) != len(found):
            return f"{path} (length)", len(expected), len(found)
        return None
    return None if _same(expected, found) else (path, expected, found)


@dataclass(slots=True)
class Report:
    """What verify checked: printed as its summary."""

    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(self.lines)


#: what verify puts in place of a configured API key's ``***``: a key must be 32 characters
#: to validate, and counts in the config fingerprint only as set (config.fingerprint)
KEY_PLACEHOLDER: Final = "*" * 32


def load_pack_config(data: bytes) -> Settings:
    """The settings of a pack's ``config.yaml``: secrets are ``***`` there, which every secret
    field takes but a configured API key (32 characters at least): that gets
    ``KEY_PLACEHOLDER``. A ConfigError names what does not validate."""
    doc = yaml.safe_load(data)
    keys = (((doc or {}).get("api") or {}).get("auth") or {}).get("keys") if isinstance(doc, dict) else None
    for k in keys if isinstance(keys, list) else []:
        if isinstance(k, dict) and k.get("key") == "***":
            k["key"] = KEY_PLACEHOLDER
    return settings_from_dict(doc, L.CONFIG)


def _read(root: Path, rel: str) -> bytes:
    try:
        return (root / rel).read_bytes()
    except FileNotFoundError:
        raise Mismatch(rel, "", "missing from the pack") from None
    except OSError as exc:
        raise Mismatch(rel, "", f"cannot read: {exc.strerror or exc}") from exc


def _json_file(root: Path, rel: str) -> Any:
    try:
        return json.loads(_read(root, rel))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Mismatch(rel, "", f"not valid JSON: {exc}") from None


def _manifest(root: Path) -> tuple[bytes, dict[str, str], Ed25519PublicKey]:
    data = _read(root, L.MANIFEST)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Mismatch(L.MANIFEST, "", f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != L.FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise Mismatch(L.MANIFEST, "format", f"expected {L.FORMAT!r}, found {got!r}")
    files = doc.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise Mismatch(L.MANIFEST, "files", "expected an object of relative path -> SHA-256 hex")
    try:
        raw = base64.b64decode(str(doc.get("public_key")), validate=True)
        key = Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise Mismatch(L.MANIFEST, "public_key", f"not a base64 raw Ed25519 public key: {exc}") from None
    return data, files, key


def check_integrity(root: Path, public_key: Path | None, report: Report) -> None:
    """Signature, pinned key, and every file's hash (module docstring, step 1)."""
    data, files, key = _manifest(root)
    fp = public_raw_b64(key)
    try:
        sig = base64.b64decode(_read(root, L.SIGNATURE).strip(), validate=True)
    except binascii.Error as exc:
        raise Mismatch(L.SIGNATURE, "", f"not base64: {exc}") from None
    if not signature_ok(key, sig, data):
        raise Mismatch(L.SIGNATURE, "", f"the signature does not match {L.MANIFEST} under the pack's "
                       f"public key {fp}: {L.MANIFEST} was changed (or re-hashed) after it was "
                       "signed, or the signature is not the gateway's")
    if public_key is not None:
        try:
            pinned = read_public_key(public_key.read_bytes(), str(public_key))
        except OSError as exc:
            raise EvidenceKeyError(f"{public_key}: cannot read: {exc.strerror or exc}") from exc
        if public_raw_b64(pinned) != fp:
            raise Mismatch(L.MANIFEST, "public_key", f"the pack is signed by key {fp}, not by the "
                           f"key of {public_key} ({public_raw_b64(pinned)})")
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - L.UNSIGNED
    for rel in sorted(files):
        if rel not in present:
            raise Mismatch(rel, "", f"listed in {L.MANIFEST} but missing from the pack (removed)")
    for rel in sorted(present - set(files)):
        raise Mismatch(rel, "", f"not listed in {L.MANIFEST} (a file added to the pack after signing)")
    for rel in sorted(files):
        got = sha256_file(root / rel)
        if got != files[rel]:
            raise Mismatch(rel, "SHA-256", f"expected {files[rel]} (manifest), found {got}: the "
                           "file was changed after the pack was signed")
    pem = read_public_key(_read(root, L.PUBLIC_KEY), L.PUBLIC_KEY)
    if public_raw_b64(pem) != fp:
        raise Mismatch(L.PUBLIC_KEY, "", f"holds key {public_raw_b64(pem)}, but the manifest is "
                       f"signed by {fp}")
    how = f"the key of {public_key}" if public_key else "the pack's own key (pin it with --public-key)"
    report.lines += [f"signature: valid, Ed25519 key {fp}: {how}",
                     f"files: {len(files)} listed in {L.MANIFEST}, every SHA-256 matches, none added"]


def _csv_iter(root: Path, rel: str, columns: Sequence[str]) -> Iterator[list[str]]:
    """The rows of a CSV of the pack after its header (which must be ``columns``), read as
    they are used, each checked for its number of fields."""
    try:
        f = (root / rel).open(encoding="utf-8", errors="strict", newline="")
    except FileNotFoundError:
        raise Mismatch(rel, "", "missing from the pack") from None
    with f:
        try:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or tuple(header) != tuple(columns):
                raise Mismatch(rel, "header", f"expected {','.join(columns)}, found "
                               f"{','.join(header) if header else '(empty file)'}")
            for i, r in enumerate(reader, start=2):
                if len(r) != len(columns):
                    raise Mismatch(rel, f"line {i}", f"expected {len(columns)} fields, found {len(r)}")
                yield r
        except (UnicodeDecodeError, csv.Error) as exc:
            raise Mismatch(rel, "", f"not a UTF-8 CSV file: {exc}") from None


def _csv_rows(root: Path, rel: str, columns: Sequence[str]) -> list[list[str]]:
    return list(_csv_iter(root, rel, columns))


def _time(rel: str, line: int, column: str, text: str) -> int:
    try:
        return L.parse_ns(text)
    except ValueError as exc:
        raise Mismatch(rel, f"line {line} {column}", str(exc)) from None


def _pack_tags(root: Path, settings: Settings, declared: dict[str, TagRecord]) -> dict[str, TagRecord]:
    """The tags of ``inputs/tags.csv`` (absent: none), each of an asset of ``config.yaml`` and
    none declared there: a central tierproof's tags as the gateways registered them."""
    if not (root / L.TAGS).is_file():
        return {}
    assets = {a.path for a in settings.assets}
    out: dict[str, TagRecord] = {}
    for i, (tag, asset, role, device, protocol, unit, enum) in enumerate(
            _csv_iter(root, L.TAGS, L.TAGS_COLUMNS), start=2):
        if tag in declared or tag in out:
            where = f"in {L.CONFIG}" if tag in declared else "twice"
            raise Mismatch(L.TAGS, f"line {i}", f"tag {tag} is declared {where}: {L.TAGS} lists "
                           f"only tags {L.CONFIG} does not declare, once each")
        if asset not in assets or tag.rsplit("/", 1)[0] != asset:
            raise Mismatch(L.TAGS, f"line {i}", f"tag {tag} of asset {asset}: not a signal of an "
                           f"asset of {L.CONFIG}")
        try:
            Role(role)
            mapping = None if not enum else {int(k): str(v) for k, v in json.loads(enum).items()}
        except (ValueError, AttributeError) as exc:
            raise Mismatch(L.TAGS, f"line {i}", f"tag {tag}: role {role!r} or enum {enum!r} is not "
                           f"valid ({exc})") from None
        out[tag] = TagRecord(path=tag, asset=asset, role=role, device=device, protocol=protocol,
                             unit=unit, enum=mapping)
    return out


def _fill_store(root: Path, settings: Settings, store: SqliteStore) -> tuple[int, int]:
    """The pack's samples and gaps in ``store``, its tags those of ``config.yaml`` and of
    ``inputs/tags.csv`` (a central tierproof's): (samples, gaps)."""
    records = {t.path: t for t in tag_records(settings)}
    records.update(_pack_tags(root, settings, records))
    ids = store.register_tags(list(records.values()))
    tag_id: list[int] = []
    ts: list[int] = []
    value: list[float] = []
    quality: list[int] = []
    n = 0

    def flush() -> None:
        nonlocal n
        if tag_id:
            store.write(Batch(np.array(tag_id, np.int32), np.array(ts, np.int64),
                              np.array(value, np.float64), np.array(quality, np.uint8)))
        n += len(tag_id)
        for x in (tag_id, ts, value, quality):
            x.clear()

    for i, (tag, asset, role, t, v, q) in enumerate(_csv_iter(root, L.SAMPLES, L.SAMPLES_COLUMNS), start=2):
        rec = records.get(tag)
        if rec is None:
            raise Mismatch(L.SAMPLES, f"line {i}", f"tag {tag!r} is not a tag of {L.CONFIG}")
        if (asset, role) != (rec.asset, rec.role):
            raise Mismatch(L.SAMPLES, f"line {i}", f"tag {tag} is asset {rec.asset}, role {rec.role} "
                           f"in {L.CONFIG}; found asset {asset}, role {role}")
        tag_id.append(ids[tag])
        ts.append(_time(L.SAMPLES, i, "ts", t))
        try:
            value.append(float(v))
            quality.append(int(q))
        except ValueError as exc:
            raise Mismatch(L.SAMPLES, f"line {i}", f"value or quality is not a number: {exc}") from None
        if not 0 <= quality[-1] <= 255:
            raise Mismatch(L.SAMPLES, f"line {i} quality", f"{q} is not a stored quality (0-255)")
        if len(tag_id) >= _BATCH:
            flush()
    flush()
    gaps = _csv_rows(root, L.GAPS, L.GAPS_COLUMNS)
    for i, (asset, device, start, end, reason) in enumerate(gaps, start=2):
        gid = store.open_gap(device, _time(L.GAPS, i, "start", start), reason, asset or None)
        if end:
            store.close_gap(gid, _time(L.GAPS, i, "end", end))
    return n, len(gaps)


class _PackService(KpiService):
    """The KPI service over the pack's store, with the history the pack records (it holds
    only the windows' samples, not the whole history: ``first_sample`` and the span's
    coverage are taken as recorded)."""

    def __init__(self, settings: Settings, store: SqliteStore, versions: dict[str, dict[str, Any]],
                 history: dict[str, Any]) -> None:
        super().__init__(settings, store, rollups=False, declared_versions=versions)
        first = history.get("first_sample")
        self._first = None if first is None else to_ns(_dt(first))
        self._coverage = history.get("coverage")

    def first_sample_ns(self, end_ns: int) -> int | None:
        return self._first if self._first is not None and self._first < end_ns else None

    def total(self, start_ns: int, end_ns: int) -> TimeElements:
        if self._coverage is None:
            return TimeElements(units=0)
        return TimeElements(pbt_s=1.0, known_s=float(self._coverage))


def _dt(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


def _compare_rows(rel: str, expected: Iterator[list[str]], found: list[list[str]], keys: int,
                  columns: Sequence[str], numeric: bool) -> int:
    """Row by row: the first ``keys`` columns exactly, the rest as numbers within REL_TOL
    (``numeric``) or exactly."""
    n = 0
    for n, exp in enumerate(expected, start=1):
        line = n + 1
        if n > len(found):
            raise Mismatch(rel, f"line {line}",
                           f"expected a row {','.join(exp[:keys])}, found the end of the file")
        got = found[n - 1]
        for c, (e, f) in enumerate(zip(exp, got, strict=True)):
            same = e == f
            if not same and numeric and c >= keys:
                try:
                    same = _close(float(e), float(f))
                except ValueError:
                    same = False
            if not same:
                where = f"line {line} ({','.join(exp[:keys])}) {columns[c]}"
                raise Mismatch(rel, where, f"expected {e or '(empty)'}, found {f or '(empty)'}")
    if len(found) > n:
        raise Mismatch(rel, f"line {n + 2}",
                       f"expected the end of the file, found a row {','.join(found[n][:keys])}")
    return n


def _day_sums(rel: str, service: KpiService, windows: Windows, rows: list[list[str]]) -> int:
    """Σ of the hourly rows of each asset-day == that day's elements computed on its own."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(service.settings.calendar.timezone)
    fields = L.ELEMENT_FIELDS
    at = 0
    checked = 0
    by_window: dict[str, list[tuple[int, list[tuple[int, int]]]]] = {
        label: day_cells(a, b, tz) for label, a, b in windows.spans}
    for label, _, _ in windows.spans:
        for asset in service.settings.assets:
            for day_start, cells in by_window[label]:
                part = rows[at:at + len(cells)]
                at += len(cells)
                day_end = cells[-1][1]
                got = np.array([[float(x) for x in r[3:]] for r in part]).sum(axis=0) if part else None
                e = service.results(day_start, day_end, [asset])[0].elements
                for k, f in enumerate(fields):
                    if f in ("window_s", "shared_pru_s", "units", "pq_known", "gq_known",
                             "units_without_pru", "std_units"):
                        continue  # per unit, not summed over the hours of a day
                    want = float(getattr(e, f))
                    if got is None or not _close(want, float(got[k])):
                        raise Mismatch(rel, f"{asset.path} {label} day from {L.format_ns(day_start)}",
                                       f"the hours' {f} add up to {None if got is None else got[k]}, "
                                       f"but the day's {f} is {want}")
                checked += 1
    return checked


def verify_pack(root: Path, public_key: Path | None = None) -> Report:
    """Verify the pack in ``root`` (module docstring); a Mismatch at the first difference."""
    report = Report()
    if not root.is_dir():
        raise Mismatch(str(root), "", "not a directory (unzip a pack first)")
    check_integrity(root, public_key, report)
    versions = _json_file(root, L.VERSIONS)
    config_bytes = _read(root, L.CONFIG)
    if versions.get("config_sha256") != hashlib.sha256(config_bytes).hexdigest():
        raise Mismatch(L.VERSIONS, "config_sha256", f"expected {hashlib.sha256(config_bytes).hexdigest()} "
                       f"(of {L.CONFIG}), found {versions.get('config_sha256')}")
    try:
        settings = load_pack_config(config_bytes)
        criteria = load_tiers(root / L.CRITERIA)
    except ConfigError as exc:
        raise Mismatch(L.CONFIG, "", f"not a valid configuration: {exc}") from None
    if versions.get("criteria_version") != criteria.version:
        raise Mismatch(L.VERSIONS, "criteria_version", f"expected {criteria.version} (of "
                       f"{L.CRITERIA}), found {versions.get('criteria_version')}")
    declared = _json_file(root, L.DECLARED)
    keys = ("version", "supplied_by", "supplied_at", "source", "reason")
    try:
        declared_versions = {i: {k: v.get(k) for k in keys} for i, v in declared["items"].items()}
    except (KeyError, TypeError, AttributeError) as exc:
        raise Mismatch(L.DECLARED, "items", f"expected an object of item -> its version, who "
                       f"supplied it and when ({type(exc).__name__}: {exc})") from None
    recorded = _json_file(root, L.ASSESSMENT)
    try:
        windows = Windows.of(recorded)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise Mismatch(L.ASSESSMENT, "window", f"expected window and baseline_window with ISO 8601 "
                       f"from and to ({type(exc).__name__}: {exc})") from None
    with (tempfile.TemporaryDirectory(prefix="tierproof-verify-") as tmp,
          SqliteStore(Path(tmp) / "pack.db") as store):
        n_samples, n_gaps = _fill_store(root, settings, store)
        notes, n_events, n_notes = restore_inputs(root, settings, store, Path(tmp))
        service = _PackService(settings, store, declared_versions, recorded.get("history") or {})
        with service.snapshot():
            loss_lines = verify_losses(root, service, windows, notes)
            planned = _csv_rows(root, L.PLANNED, L.PLANNED_COLUMNS)
            n_planned = _compare_rows(L.PLANNED, planned_rows(settings, windows), planned, 3,
                                      L.PLANNED_COLUMNS, False)
            states = _csv_rows(root, L.STATES, L.STATES_COLUMNS)
            n_states = _compare_rows(L.STATES, state_rows(service, windows), states, 5,
                                     L.STATES_COLUMNS, False)
            hourly = _csv_rows(root, L.HOURLY, L.HOURLY_COLUMNS)
            n_hours = _compare_rows(L.HOURLY, hourly_rows(service, windows), hourly, 3,
                                    L.HOURLY_COLUMNS, True)
            n_days = _day_sums(L.HOURLY, service, windows, hourly)
            result = _recompute(settings, service, criteria, recorded)
    d = first_difference(json.loads(json.dumps(result)), recorded, "")
    if d is not None:
        path, exp, got = d
        raise Mismatch(L.ASSESSMENT, path.lstrip("."), f"recomputed {exp!r}, found {got!r}")
    if render_report(root).encode("utf-8") != _read(root, L.REPORT):
        raise Mismatch(L.REPORT, "", "differs from the report rendered again from the pack's "
                       "inputs: it does not show this pack's numbers")
    tiers = recorded.get("tiers", {})
    verdicts = sum(len(t.get("criteria", [])) for t in tiers.values()) if isinstance(tiers, dict) else 0
    report.lines += [
        f"inputs: {n_samples} samples, {n_gaps} gap rows, {n_events} OPC UA events, {n_notes} "
        f"stop annotations; {n_planned} planned intervals and "
        f"{n_states} state intervals recomputed from {L.CONFIG} and the samples",
        f"{L.HOURLY}: {n_hours} rows recomputed from the samples; the hours of {n_days} "
        "asset-days add up to each day's elements",
        f"{L.ASSESSMENT}: KPIs, {len(recorded.get('figures', {}))} figures with their deltas and "
        f"intervals (seed {recorded.get('bootstrap', {}).get('seed')}, "
        f"{recorded.get('bootstrap', {}).get('n_resamples')} resamples) and {verdicts} verdicts of "
        f"{len(tiers)} tiers recomputed, equal within {REL_TOL:g} relative",
        *loss_lines,
        f"{L.REPORT}: rendered again from the pack, identical",
        "taken as recorded: history.first_sample and history.coverage (the pack holds the "
        "windows, not the whole history)",
    ]
    return report


def _recompute(settings: Settings, service: KpiService, criteria: Any, recorded: dict[str, Any],
               ) -> dict[str, Any]:
    names = [t.name for t in criteria.tiers]
    got = list(recorded.get("tiers") or {})
    tier = got[0] if len(got) == 1 and len(names) > 1 else None
    w, b = recorded.get("window") or {}, recorded.get("baseline_window") or {}
    boot = recorded.get("bootstrap") or {}
    try:
        return assess(settings, service, criteria, tier=tier, from_=w.get("from"), to=w.get("to"),
                      baseline_from=b.get("from"), baseline_to=b.get("to"),
                      seed=int(boot.get("seed", 0)), n_resamples=int(boot.get("n_resamples", 0)))
    except TierproofError as exc:
        raise Mismatch(L.ASSESSMENT, "", f"cannot be recomputed: {exc}") from None
