"""The API's routes, one ``APIRouter`` per area; ``create_app`` includes ``ROUTERS`` in order."""

from __future__ import annotations

from fastapi import APIRouter

from . import (
    configuration,
    dashboard,
    declared,
    evidence,
    gateway,
    kpis,
    latest,
    losses,
    metrics,
    plant,
    series,
    tiers,
)

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (dashboard.router, gateway.router, plant.router, kpis.router,
                                    tiers.router, configuration.router,
                                    declared.router, metrics.router, series.router,
                                    latest.router, evidence.router, losses.router)
