"""The configuration in force: what an auditor compares with the file."""

from __future__ import annotations

from fastapi import APIRouter

from config.fingerprint import config_fingerprint, effective_view, runtime_overrides

from ..deps import SettingsDep
from ..models import ConfigOut

router = APIRouter(prefix="/api/v1", tags=["config"])


@router.get(
    "/config",
    response_model=ConfigOut,
    summary="The effective configuration (secrets redacted), calendar and fingerprint",
    description=(
        "Every setting in force, with the runtime overrides applied and listed, and every "
        "secret redacted. `config_fingerprint` is of the file's meaning only (what "
        "`tierproof check-config FILE` prints), the one every KPI answer and assessment records."
    ),
)
def get_config(settings: SettingsDep) -> ConfigOut:
    return ConfigOut(
        config_fingerprint=config_fingerprint(settings),
        runtime_overrides=runtime_overrides(settings),
        calendar=settings.calendar,
        settings=effective_view(settings),
    )
