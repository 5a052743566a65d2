"""The evidence pack as a zip (``api.evidence``; ``docs/evidence.md``)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from config import load_tiers
from config.errors import NotFoundError

from ..deps import NowDep, ServiceDep, SettingsDep
from ..evidence import evidence_zip, key_path, load_or_create_key, write_pack
from ..plant_time import ZonesDep
from ..problems import echo
from .kpis import assessment_windows, check_windows, explicit
from .params import BaselineFromQuery, BaselineToQuery, FromQuery, ToQuery

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["evidence"])

ZIP = "application/zip"


@router.get(
    "/evidence",
    summary="The signed evidence pack of the tier assessment, as a zip",
    description=(
        "The pack `tierproof evidence` writes, zipped: assessment.json (the answer of "
        "/api/v1/tiers/assessment for the same parameters), versions.json, config.yaml "
        "(secrets as ***), criteria.yaml, declared.json (declared items with who supplied them "
        "and when, and the audit trail), inputs/hourly.csv, samples.csv, states.csv, gaps.csv "
        "and planned.csv, public_key.pem, and manifest.json (SHA-256 of every file) with "
        "manifest.sig, its Ed25519 signature by the gateway's key. `tierproof verify DIR "
        "--public-key FILE` checks an unzipped pack and recomputes every KPI, delta, interval "
        "and verdict from it (docs/evidence.md). Windows default to kpi.current and "
        "kpi.baseline, as the assessment's. Built in a worker thread; the zip is streamed."
    ),
    response_class=FileResponse,
    responses={200: {
        "description": "the pack as a zip archive (Content-Disposition names the file)",
        "content": {ZIP: {"schema": {"type": "string", "format": "binary"}}},
    }},
)
async def get_evidence_pack(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    now: NowDep,
    zones: ZonesDep,
    tier: Annotated[str | None, Query(description="one tier (default: every tier)",
                                      examples=["basic"])] = None,
    from_: FromQuery = None,
    to: ToQuery = None,
    baseline_from: BaselineFromQuery = None,
    baseline_to: BaselineToQuery = None,
) -> FileResponse:
    criteria = await asyncio.to_thread(load_tiers)
    names = [t.name for t in criteria.tiers]
    if tier is not None and tier not in names:
        raise NotFoundError(f"no tier {echo(tier)} in criteria {criteria.version}; tiers: {', '.join(names)}")
    start, end, b_start, b_end = assessment_windows(
        settings, zones, now, from_=from_, to=to, baseline_from=baseline_from,
        baseline_to=baseline_to, shift=None, day=None)
    check_windows(settings, start, end, b_start, b_end)
    declared: Any = getattr(request.app.state, "declared", None)
    tmp = Path(tempfile.mkdtemp(prefix="tierproof-evidence-"))

    def build() -> Path:
        key = load_or_create_key(key_path(settings))
        write_pack(tmp / "pack", settings, service, key, declared=declared, tier=tier,
                   from_=explicit(start), to=explicit(end), baseline_from=explicit(b_start),
                   baseline_to=explicit(b_end), now=now)
        return evidence_zip(tmp / "pack", tmp / "evidence.zip")

    # one pack at a time per gateway: a pack reads every sample of its windows (bounded CPU
    # and memory whatever the number of concurrent downloads)
    lock = getattr(request.app.state, "evidence_lock", None)
    if lock is None:
        lock = request.app.state.evidence_lock = asyncio.Lock()
    try:
        async with lock:
            path = await asyncio.to_thread(build)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    name = f"tierproof-evidence-{_stamp(start)}-{_stamp(end)}.zip"
    return FileResponse(path, media_type=ZIP, filename=name,
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))


def _stamp(t: datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%S")
