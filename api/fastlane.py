"""The requests clients repeat most, answered without FastAPI's per-request machinery.

Under 50 clients back to back (issue 12) a cheap answer's cost is the framework's, not ours:
routing through the included routers, the exception and exit-stack middleware, solving six
dependencies and validating eight query parameters took about half of the serving loop's
time for a ``/kpis`` answer that was already computed (py-spy, docs/benchmarks.md). The plain
forms of the two hot requests are answered here instead, by the very functions the routes
call, so the answer (body, headers, status) is the route's:

- ``GET /api/v1/kpis`` with no query, or only ``from``, ``to``, ``asset``, ``line`` (each
  once, none empty): what the dashboard polls (``routes.kpis.kpis_answer``);
- ``GET /api/v1/tags/{path}/latest`` with no query (``routes.plant.get_tag_latest``).

Which route a path is, the app's router decides, never this module: a path is answered here
only after the router sent a request of it to one of those two routes and the route answered
200 (the path, its route and its path parameters are then remembered; at most
``MAX_PATHS`` of them). Anything else -- another method or route, a query this module does
not read (``tz``, ``shift``, ``format``, a parameter twice), ``Accept`` naming CSV, and any
error -- is left to the app, which answers as it always did (an error found here is found
again there and answered as a problem). Middleware outside this one (metrics, keys, the
Host allow-list, CORS, the 500 problem) sees every request as before; the route is set in
the scope, so ``/metrics`` labels these answers with their route template.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .deps import now_of
from .plant_time import Zones
from .routes import kpis as kpi_routes
from .routes import plant as plant_routes

__all__ = ["MAX_PATHS", "FastLane"]

#: paths remembered (a plant's tags, each a path of its own); beyond it, the app answers
MAX_PATHS: Final = 20_000
#: the query parameters of a plain ``/kpis`` request
_KPI_PARAMS: Final = {"from": "from_", "to": "to", "asset": "asset", "line": "line"}

Answer = Callable[[Any, Scope, dict[str, Any]], Awaitable[Response | None]]


async def _kpis(state: Any, scope: Scope, path_params: dict[str, Any]) -> Response | None:
    kw: dict[str, str] = {}
    qs = scope.get("query_string", b"")
    if qs:
        # read as Starlette reads it (QueryParams): latin-1, blanks kept
        for k, v in parse_qsl(qs.decode("latin-1"), keep_blank_values=True):
            name = _KPI_PARAMS.get(k)
            if name is None or name in kw or not v:
                return None  # the app's reading (tz, shift, a 422 for a second value ...)
            kw[name] = v
    settings = state.settings
    plant = settings.calendar.zone
    return await kpi_routes.kpis_answer(state.service, state.runner, settings, now_of(state),
                                        Zones(plant, plant, None), **kw)


async def _latest(state: Any, scope: Scope, path_params: dict[str, Any]) -> Response | None:
    if scope.get("query_string"):
        return None  # tz=: the app
    plant = state.settings.calendar.zone
    return await plant_routes.get_tag_latest(state.gateway, Zones(plant, plant, None),
                                             path_params["tag_path"])


#: the routes' endpoints (as the router holds them) and how each plain request is answered
_LANES: Final[dict[Callable[..., Any], Answer]] = {
    kpi_routes.get_kpis: _kpis,
    plant_routes.get_tag_latest: _latest,
}


def _wants_csv(scope: Scope) -> bool:
    return any(name == b"accept" and b"csv" in value.lower() for name, value in scope["headers"])


class FastLane:
    """ASGI middleware, innermost of the app's own: see the module doc."""

    def __init__(self, app: ASGIApp, max_paths: int = MAX_PATHS) -> None:
        self.app = app
        self.max_paths = max_paths
        #: path -> (answer, route, path parameters), learnt from the router's choices
        self._paths: dict[str, tuple[Answer, Any, dict[str, Any]]] = {}
        self.answered = 0  # requests answered here (tests, /metrics could read it)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        known = self._paths.get(scope["path"])
        if known is None:
            await self._learn(scope, receive, send)
            return
        answer, route, path_params = known
        if not _wants_csv(scope):
            try:
                response = await answer(scope["app"].state, scope, path_params)
            except Exception:  # the app finds it again and answers it as a problem
                response = None
            if response is not None:
                # as the router leaves the scope: /metrics labels the answer by its route
                scope["route"], scope["endpoint"] = route, route.endpoint
                scope["path_params"] = path_params
                self.answered += 1
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _learn(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app answers; a 200 of a route of :data:`_LANES` marks its path for this lane."""
        status = 0

        async def watch(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        route = scope.get("route")
        answer = _LANES.get(getattr(route, "endpoint", None))  # type: ignore[arg-type]
        if (answer is not None and status == 200 and len(self._paths) < self.max_paths
                and isinstance(scope.get("path_params"), dict)):
            self._paths[scope["path"]] = (answer, route, dict(scope["path_params"]))
