"""The evidence pack's layout: file names, CSV columns and the time format, shared by the
writer (``api.evidence.pack``), the verifier (``api.evidence.verify``) and the report.

The layout is a contract with everything that reads a pack (``report.html``'s writer, an
auditor's own scripts): names and columns change only with :data:`FORMAT`.
"""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Final

from kpi.oee import TimeElements

__all__ = [
    "ANNOTATIONS",
    "ANNOTATIONS_COLUMNS",
    "ASSESSMENT",
    "CONFIG",
    "CRITERIA",
    "DECLARED",
    "ELEMENT_FIELDS",
    "EVENTS",
    "EVENTS_COLUMNS",
    "FORMAT",
    "GAPS",
    "GAPS_COLUMNS",
    "HOURLY",
    "HOURLY_COLUMNS",
    "LOSSES",
    "MANIFEST",
    "PLANNED",
    "PLANNED_COLUMNS",
    "PUBLIC_KEY",
    "REPORT",
    "SAMPLES",
    "SAMPLES_COLUMNS",
    "SIGNATURE",
    "STATES",
    "STATES_COLUMNS",
    "STOPS",
    "TAGS",
    "TAGS_COLUMNS",
    "UNSIGNED",
    "VERSIONS",
    "WINDOWS",
    "format_ns",
    "parse_ns",
]

#: the manifest's ``format``
FORMAT: Final = "tierproof-evidence/1"

ASSESSMENT: Final = "assessment.json"
VERSIONS: Final = "versions.json"
CONFIG: Final = "config.yaml"
#: the tier criteria the assessment judged by (the file as loaded): verify needs them
CRITERIA: Final = "criteria.yaml"
DECLARED: Final = "declared.json"
HOURLY: Final = "inputs/hourly.csv"
SAMPLES: Final = "inputs/samples.csv"
STATES: Final = "inputs/states.csv"
GAPS: Final = "inputs/gaps.csv"
PLANNED: Final = "inputs/planned.csv"
#: the KPI tags config.yaml does not declare (a central tierproof's, from the gateways' tag
#: register in the store): only in a pack that has such tags
TAGS: Final = "inputs/tags.csv"
#: the losses of the current window (``api.evidence.losses``) and their inputs beyond the
#: samples: the OPC UA events of reason_event tags, the operators' stop annotations
LOSSES: Final = "losses.json"
STOPS: Final = "stops.csv"
EVENTS: Final = "inputs/reason_events.csv"
ANNOTATIONS: Final = "inputs/stop_annotations.csv"
REPORT: Final = "report.html"
PUBLIC_KEY: Final = "public_key.pem"
MANIFEST: Final = "manifest.json"
SIGNATURE: Final = "manifest.sig"
#: the files the manifest does not list: itself and its signature
UNSIGNED: Final = frozenset({MANIFEST, SIGNATURE})

#: ``window`` column values, in the order the pack writes them
WINDOWS: Final = ("baseline", "current")
#: every ``kpi.oee.TimeElements`` field, in declaration order
ELEMENT_FIELDS: Final = tuple(f.name for f in fields(TimeElements))
HOURLY_COLUMNS: Final = ("asset", "window", "hour_start", *ELEMENT_FIELDS)
SAMPLES_COLUMNS: Final = ("tag", "asset", "role", "ts", "value", "quality")
STATES_COLUMNS: Final = ("asset", "start", "end", "state", "mode")
GAPS_COLUMNS: Final = ("asset", "device", "start", "end", "reason")
PLANNED_COLUMNS: Final = ("asset", "start", "end")
TAGS_COLUMNS: Final = ("tag", "asset", "role", "device", "protocol", "unit", "enum")
EVENTS_COLUMNS: Final = ("tag", "asset", "ts", "quality", "text")
ANNOTATIONS_COLUMNS: Final = ("asset", "stop_start", "reason", "note", "annotated_by",
                              "annotated_at", "replaced_reason", "replaced_source")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NS: Final = 1_000_000_000
_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z")


def format_ns(ns: int, *, nanos: bool = False) -> str:
    """An instant as ISO 8601 UTC with ``Z``, exact to the nanosecond: ``2026-11-30T22:00:00Z``,
    with ``.123456789`` when it has a fraction of a second (``nanos``: always nine digits)."""
    sec, frac = divmod(int(ns), _NS)
    text = (_EPOCH + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{frac:09d}Z" if frac or nanos else f"{text}Z"


def parse_ns(text: str) -> int:
    """The instant ``format_ns`` wrote, in nanoseconds; a ValueError names what is wrong."""
    m = _TIME.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not an ISO 8601 UTC time like 2026-11-30T22:00:00.123456789Z")
    whole = datetime.fromisoformat(m[1]).replace(tzinfo=UTC)
    sec = (whole - _EPOCH) // timedelta(seconds=1)
    return sec * _NS + int((m[2] or "").ljust(9, "0") or 0)
