"""Dependencies of the routes (``Depends``): what the app holds, and instants from queries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from config.errors import KpiError
from config.settings import Settings
from config.times import parse_instant, to_ns

from .gateway import Gateway
from .service import KpiService

__all__ = ["GatewayDep", "ServiceDep", "SettingsDep", "instant"]


def get_settings(request: Request) -> Settings:
    """The settings the app was built for (set by ``create_app``)."""
    settings: Settings = request.app.state.settings
    return settings


def get_gateway(request: Request) -> Gateway:
    """The running gateway (set by the app's lifespan)."""
    gateway: Gateway = request.app.state.gateway
    return gateway


def get_service(request: Request) -> KpiService:
    """The KPI service over the gateway's store (set by the app's lifespan)."""
    service: KpiService = request.app.state.service
    return service


SettingsDep = Annotated[Settings, Depends(get_settings)]
GatewayDep = Annotated[Gateway, Depends(get_gateway)]
ServiceDep = Annotated[KpiService, Depends(get_service)]


def instant(value: str | None, default: str, name: str) -> datetime:
    """Query parameter ``name`` (or ``default`` when absent) as an instant; a bad one is a
    KpiError naming the parameter."""
    try:
        at = parse_instant(value if value is not None else default)
        to_ns(at)  # within the range of stored times, or the parameter is at fault
        return at
    except ValueError as exc:
        raise KpiError(f"parameter {name!r}: {exc}") from exc
