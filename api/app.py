"""FastAPI application: the composition root. Its lifespan owns the store and the collectors;
the routes (``api.routes``), their dependencies (``api.deps``) and the problem responses
(``api.problems``) live beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from config.settings import Settings
from store.base import Store

from .gateway import Gateway
from .problems import install_problem_handlers
from .routes import ROUTERS
from .service import KpiService
from .version import VERSION


def create_app(
    settings: Settings, *, store: Store | None = None, collect: bool = True
) -> FastAPI:
    """Build the API for ``settings``. ``collect=False`` serves stored data only."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Gateway(settings, store=store, collect=collect) as gw:
            app.state.gateway = gw
            app.state.service = KpiService(settings, gw.store)
            yield

    app = FastAPI(
        title="tierproof",
        version=VERSION,
        summary="Smart-factory KPIs with their evidence, from OPC UA / Modbus / MQTT telemetry",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_problem_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
