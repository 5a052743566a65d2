"""FastAPI application: the composition root. Its lifespan owns the store and the collectors;
the routes (``api.routes``), their dependencies (``api.deps``) and the problem responses
(``api.problems``) live beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from config.settings import Settings
from store.base import Store

from .flight import KpiRunner
from .gateway import Gateway
from .problems import install_problem_handlers
from .rollups import RollupMaintainer
from .routes import ROUTERS
from .service import KpiService
from .tabular import install_csv_openapi
from .version import VERSION


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    collect: bool = True,
    now_quantum_s: float = 1.0,
    kpi_workers: int = 2,
    kpi_cache_size: int = 64,
    kpi_cache_bytes: int = 32 << 20,
    kpi_settle_s: float = 60.0,
    kpi_single_flight: bool = True,
    rollups_maintain: bool = True,
    isolate_collection: bool = True,
) -> FastAPI:
    """Build the API for ``settings``. ``collect=False`` serves stored data only.

    ``now_quantum_s``: a request's ``now`` (which relative instants such as ``now-7d`` are
    resolved against) is rounded down to it, so that requests of the same default window in
    the same quantum are identical and share one computation (0: no rounding). ``kpi_workers``
    threads compute KPIs; ``kpi_cache_size`` closed results (``kpi_cache_bytes`` at most) are
    kept, those whose windows end ``kpi_settle_s`` before they completed (``api.flight``);
    ``kpi_single_flight=False`` computes every request, for comparison. ``rollups_maintain``:
    with ``kpi.rollups`` over the embedded store, a background thread keeps the hourly
    roll-ups of closed hours (``api.rollups``). ``isolate_collection``: the collectors run on
    their own event loop and thread, never on the one serving HTTP (``api.gateway``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Gateway(settings, store=store, collect=collect, isolate=isolate_collection) as gw:
            app.state.gateway = gw
            app.state.service = KpiService(settings, gw.store)
            app.state.runner = KpiRunner(
                getattr(gw.store, "changes", None), workers=kpi_workers,
                cache_size=kpi_cache_size, cache_bytes=kpi_cache_bytes, settle_s=kpi_settle_s,
                single_flight=kpi_single_flight)
            maintainer = None
            if rollups_maintain and app.state.service.use_rollups:
                maintainer = RollupMaintainer(app.state.service)
                maintainer.start()
            app.state.rollups = maintainer
            try:
                yield
            finally:  # before the gateway closes the store the computations read
                if maintainer is not None:
                    maintainer.close()
                app.state.runner.close()

    app = FastAPI(
        title="tierproof",
        version=VERSION,
        summary="Smart-factory KPIs with their evidence, from OPC UA / Modbus / MQTT telemetry",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.now_quantum_s = now_quantum_s
    install_problem_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_csv_openapi(app)
    return app
