"""FastAPI application: the composition root. Its lifespan owns the store and the collectors;
the routes (``api.routes``), their dependencies (``api.deps``) and the problem responses
(``api.problems``) live beside it."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel

from config.settings import Settings
from store.base import Store

from .auth import check_keys, install_auth
from .declared import DeclaredEvidence
from .fastlane import FastLane
from .flight import KpiRunner
from .gateway import Gateway
from .metrics import install_metrics
from .problems import install_problem_handlers
from .query import single_valued_query
from .rollups import RollupMaintainer
from .routes import ROUTERS
from .routes.dashboard import static_files
from .service import KpiService
from .tabular import install_csv_openapi
from .version import VERSION


def operation_id(route: APIRoute) -> str:
    """A route's OpenAPI operationId: its function's name (``get_kpis``), short and stable,
    so that generated clients name their calls after it."""
    return route.name


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    """The pydantic models a response model annotation names (``list[TagOut]`` -> TagOut)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models(arg)


def install_examples(app: FastAPI, routes: Iterable[object]) -> None:
    """Give each response model's schema in ``app.openapi()`` its examples as written.

    FastAPI writes the document without null values, examples included, so an example of
    an answer with null fields (most have some) would not validate against its own model;
    the examples are put back from the models' ``json_schema_extra``."""
    build: Callable[[], dict[str, Any]] = app.openapi
    models = {m.__name__: m for r in routes if isinstance(r, APIRoute)
              for m in _models(r.response_model)}

    def openapi() -> dict[str, Any]:
        schema = build()
        if not getattr(app.state, "examples_openapi", False):
            schemas = schema.get("components", {}).get("schemas", {})
            for name, model in models.items():
                extra = model.model_config.get("json_schema_extra")
                if isinstance(extra, dict) and "examples" in extra and name in schemas:
                    schemas[name]["examples"] = extra["examples"]
            app.state.examples_openapi = True
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


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
    fast_lane: bool = True,
    sole_writer: bool | None = None,
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
    their own event loop and thread, never on the one serving HTTP (``api.gateway``).
    ``fast_lane``: the plain ``/kpis`` and ``/tags/{path}/latest`` requests are answered
    without FastAPI's per-request machinery (``api.fastlane``; False: every request through
    the router, for comparison). ``sole_writer``: this process makes every write its store
    sees, so its change feed tells the KPI cache every one of them (default: ``collect`` with
    devices configured); otherwise (``tierproof serve`` beside a gateway) the cache also asks
    the store whether anyone committed (``SqliteStore.data_version``), or, over a store that
    cannot tell (InfluxDB), keeps a closed answer ``api.kpi_closed_max_age_s`` at most."""
    if sole_writer is None:
        sole_writer = collect and bool(settings.devices)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # no key, no start (api.auth.required): before any collector or store opens
        check_keys(settings, app.state.keys)
        try:
            async with _gateway_served(app):
                yield
        finally:
            app.state.keys.flush()  # the keys' last use

    @asynccontextmanager
    async def _gateway_served(app: FastAPI) -> AsyncIterator[None]:
        # the declared items supplied through the API in place of the file's (api.declared)
        declared = app.state.declared = DeclaredEvidence.open(settings)
        app.state.settings = declared.settings
        async with Gateway(declared.settings, store=store, collect=collect,
                           isolate=isolate_collection) as gw:
            app.state.gateway = gw
            app.state.service = KpiService(declared.settings, gw.store,
                                           declared_versions=declared.versions())
            changes = getattr(gw.store, "changes", None)
            version = None if sole_writer else getattr(gw.store, "data_version", None)
            # a store without a feed (the central tierproof over InfluxDB) caches nothing, as
            # before; one whose feed cannot see the others' writes gets the time bound
            max_age = (None if sole_writer or version is not None or changes is None
                       else declared.settings.api.kpi_closed_max_age_s)
            app.state.runner = KpiRunner(
                changes, workers=kpi_workers,
                cache_size=kpi_cache_size, cache_bytes=kpi_cache_bytes, settle_s=kpi_settle_s,
                single_flight=kpi_single_flight, version=version, closed_max_age_s=max_age)
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
                declared.close()

    # /docs (Swagger UI) and /redoc from the assets fastapi-offline installs with the package
    # (served under /static-offline-docs), never from a CDN: plant networks are offline
    app = FastAPIOffline(
        title="tierproof",
        version=VERSION,
        summary="Smart-factory KPIs with their evidence, from OPC UA / Modbus / MQTT telemetry",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # operation ids shown beside each operation: the names a generated client gives its calls
        swagger_ui_parameters={"displayOperationId": True},
        dependencies=[Depends(single_valued_query)],  # ?asset=a&asset=b for one asset: a 422
    )
    app.state.settings = settings
    app.state.now_quantum_s = now_quantum_s
    if fast_lane:  # first: the innermost of the app's middleware, inside keys and metrics
        app.add_middleware(FastLane)
    install_problem_handlers(app)
    # keys and scopes for every route, decided from method and path (api.auth)
    app.state.keys = install_auth(app, settings)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", static_files(), name="static")  # the dashboard's script libraries
    install_examples(app, (r for router in ROUTERS for r in router.routes))
    install_csv_openapi(app)
    install_metrics(app)  # last: its request timing is the outermost middleware
    return app
